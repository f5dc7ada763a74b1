"""The tiny embedded Janus: one pydantic config and a seeded builder of a random ``JanusForConditionalGeneration``.

Constraints of transformers' Janus that the config enforces:
  - the language model's hidden size is also the vision aligner's and the VQ aligner's ``projection_dim`` and
    the generation head's ``image_token_embed_dim`` (one ``hidden_size`` field feeds all four);
  - ``2 ** (len(vq_channel_multiplier) - 1) == patch_size``, so the VQ grid equals the vision patch grid and
    understanding and generation both use ``(image_size // patch_size) ** 2`` image tokens;
  - VQ channels are multiples of 32 (its GroupNorm has 32 groups);
  - the image placeholder id lies inside the vocabulary (it comes from the tokenizer).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import (
    JanusConfig,
    JanusForConditionalGeneration,
    JanusVisionConfig,
    JanusVQVAEConfig,
    LlamaConfig,
    PreTrainedTokenizerBase,
)

from .stem import STEM_KEY, check_stem, janus_model_class


class TinyJanusConfig(BaseModel):
    """Architecture of the tiny random-initialised Janus (defaults: ~4.7 M parameters, 64 image tokens)."""

    model_config = ConfigDict(extra="forbid")

    # Square input/output resolution (pixels) of both the understanding encoder and the VQ tokenizer.
    image_size: int = Field(64, ge=8)
    # Vision patch size = VQ downsampling factor; (image_size // patch_size) ** 2 image tokens per image.
    patch_size: int = Field(8, ge=1)
    # Language model (Llama): width, depth, attention heads (key/value heads: None = same), MLP width.
    hidden_size: int = Field(256, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = None
    intermediate_size: int = Field(512, ge=8)
    # Longest token sequence (prompt + image placeholders + answer / image tokens).
    max_position_embeddings: int = Field(512, ge=16)
    rope_theta: float = 10000.0
    # Understanding encoder (SigLIP-like ViT): width, depth, heads, MLP ratio; aligner MLP depth.
    vision_hidden_size: int = Field(128, ge=8)
    vision_layers: int = Field(2, ge=1)
    vision_heads: int = Field(4, ge=1)
    vision_mlp_ratio: float = Field(4.0, gt=0)
    aligner_depth: int = Field(2, ge=1)
    # Channels of a convolutional stem in place of the linear patch embedding (``models.stem``): one stride-2
    # layer per entry, log2(patch_size) entries. None: transformers' linear patchify.
    vision_stem_channels: list[int] | None = None
    # VQ tokenizer: codebook size and code dimension; latent (pre-quantisation) channels.
    vq_codebook_size: int = Field(512, ge=2)
    vq_embed_dim: int = Field(8, ge=1)
    vq_latent_channels: int = Field(64, ge=1)
    # VQ encoder/decoder: base channels (multiple of 32) times the per-level multipliers; one downsampling
    # (x2) between consecutive levels, so 2 ** (len(multipliers) - 1) must equal patch_size.
    vq_base_channels: int = Field(32, ge=32)
    vq_channel_multiplier: list[int] = Field(default_factory=lambda: [1, 1, 2, 2])
    vq_num_res_blocks: int = Field(1, ge=1)
    # Generation aligner depth (VQ code -> LM embedding MLP).
    vq_aligner_layers: int = Field(2, ge=1)
    # Initialisation scale (std) and seed of the random weights. transformers' 0.02 suits widths of ~1000;
    # at width 128 it starts text embeddings ~40x smaller than the image features the aligner soon emits,
    # and the tiny base stayed at chance on every question; 0.04 learns colour in 300 steps.
    initializer_range: float = Field(0.04, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> TinyJanusConfig:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        if 2 ** (len(self.vq_channel_multiplier) - 1) != self.patch_size:
            raise ValueError(
                f"2 ** (len(vq_channel_multiplier) - 1) must equal patch_size ({self.patch_size}); "
                f"got vq_channel_multiplier={self.vq_channel_multiplier}"
            )
        if any(self.vq_base_channels * m % 32 for m in self.vq_channel_multiplier):
            raise ValueError("vq_base_channels * each vq_channel_multiplier must be a multiple of 32 (GroupNorm(32))")
        if self.vision_stem_channels:
            check_stem(self.vision_stem_channels, self.patch_size)
        kv_heads = self.num_kv_heads or self.num_heads
        if self.hidden_size % self.num_heads or self.num_heads % kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must divide by vision_heads")
        return self

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def janus_config(config: TinyJanusConfig, tokenizer: PreTrainedTokenizerBase) -> JanusConfig:
    """The ``JanusConfig`` for ``config`` with vocabulary and special-token ids taken from ``tokenizer``."""
    image_token_id = tokenizer.convert_tokens_to_ids(tokenizer.image_token)
    vocab_size = len(tokenizer)
    if not 0 <= image_token_id < vocab_size:
        raise ValueError(f"image token id {image_token_id} outside the vocabulary ({vocab_size})")
    text_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        initializer_range=config.initializer_range,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    vision_config = JanusVisionConfig(
        hidden_size=config.vision_hidden_size,
        num_hidden_layers=config.vision_layers,
        num_attention_heads=config.vision_heads,
        image_size=config.image_size,
        patch_size=config.patch_size,
        mlp_ratio=config.vision_mlp_ratio,
        projection_dim=config.hidden_size,
        depth=config.aligner_depth,
        num_image_tokens=config.num_image_tokens,
        initializer_range=config.initializer_range,
        **{STEM_KEY: list(config.vision_stem_channels)} if config.vision_stem_channels else {},
    )
    vq_config = JanusVQVAEConfig(
        embed_dim=config.vq_embed_dim,
        num_embeddings=config.vq_codebook_size,
        latent_channels=config.vq_latent_channels,
        base_channels=config.vq_base_channels,
        channel_multiplier=list(config.vq_channel_multiplier),
        num_res_blocks=config.vq_num_res_blocks,
        projection_dim=config.hidden_size,
        image_token_embed_dim=config.hidden_size,
        num_hidden_layers=config.vq_aligner_layers,
        initializer_range=config.initializer_range,
    )
    return JanusConfig(
        text_config=text_config,
        vision_config=vision_config,
        vq_config=vq_config,
        image_token_id=image_token_id,
        tie_word_embeddings=True,
    )


def build_tiny_janus(config: TinyJanusConfig, tokenizer: PreTrainedTokenizerBase) -> JanusForConditionalGeneration:
    """A randomly initialised (seeded, fp32, eval mode) tiny Janus whose vocabulary is ``tokenizer``'s."""
    janus = janus_config(config, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = janus_model_class(janus)(janus)
    model.eval()
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    generation.generation_kwargs = {"boi_token_id": tokenizer.convert_tokens_to_ids(tokenizer.boi_token)}
    return model


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts (tied weights once) of the whole model and its main parts."""
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())

    inner = model.model
    return {
        "total": count(model),
        "language_model": count(inner.language_model),
        "vision_model": count(inner.vision_model) + count(inner.aligner),
        "vqmodel": count(inner.vqmodel),
        "generation": count(inner.generation_embeddings) + count(inner.generation_aligner)
        + count(inner.generation_head),
    }

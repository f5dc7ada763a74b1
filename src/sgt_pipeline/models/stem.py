"""A convolutional stem for the tiny model's understanding encoder, recorded in its saved ``config.json``.

transformers' Janus embeds image patches with one linear ``patch_size`` x ``patch_size`` convolution; from
scratch on a CPU budget that ViT does not learn to tell the shapes world's categories apart ("early
convolutions", Xiao et al. 2021; ``benchmarks/shape_encoder.py``). The embedded default replaces it by
``log2(patch_size)`` stride-2 3x3 conv + BatchNorm + ReLU layers and a 1x1 projection to the encoder width.

The stem is a setting of the vision config (``vision_config.conv_stem_channels``, saved in ``config.json``),
and ``SGTJanusForConditionalGeneration`` — a ``JanusForConditionalGeneration`` that builds the stem when its
config asks for one — loads such a checkpoint back with identical outputs. ``janus_model_class`` picks the
stock class for every other checkpoint (a real Janus-Pro directory), so nothing here applies to it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import JanusConfig, JanusForConditionalGeneration

STEM_KEY = "conv_stem_channels"  # in vision_config: channels of the stride-2 layers; absent/None = stock


class ConvStem(nn.Module):
    """Stride-2 3x3 conv + BatchNorm + ReLU per channel count, then a 1x1 projection to ``hidden_size``.

    Stands in for ``JanusVisionEmbeddings.patch_embedding`` (whose forward reads ``.weight.dtype``)."""

    def __init__(self, channels: list[int], hidden_size: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_channels = width
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(in_channels, hidden_size, 1)

    @property
    def weight(self) -> torch.Tensor:
        return self.proj.weight

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(pixels))


def stem_channels(config: JanusConfig) -> list[int] | None:
    return getattr(config.vision_config, STEM_KEY, None)


def check_stem(channels: list[int], patch_size: int) -> None:
    if 2 ** len(channels) != patch_size:
        raise ValueError(f"a conv stem of {len(channels)} stride-2 layers downsamples by {2 ** len(channels)}, "
                         f"not by patch_size {patch_size}: give log2(patch_size) channel counts")


class SGTJanusForConditionalGeneration(JanusForConditionalGeneration):
    """``JanusForConditionalGeneration`` whose understanding encoder uses ``ConvStem`` when the config says so."""

    def __init__(self, config: JanusConfig):
        super().__init__(config)
        install_stem(self.model.vision_model)


def install_stem(vision_model) -> None:
    """Give a ``JanusVisionModel`` the stem its config asks for (nothing when it asks for none)."""
    vision = vision_model.config
    channels = getattr(vision, STEM_KEY, None)
    if channels:
        check_stem(channels, vision.patch_size)
        vision_model.embeddings.patch_embedding = ConvStem(list(channels), vision.hidden_size, vision.num_channels)


def janus_model_class(path: str | Path | JanusConfig) -> type[JanusForConditionalGeneration]:
    """The class that loads a checkpoint (directory or config): the stem subclass only when it has a stem."""
    config = path if isinstance(path, JanusConfig) else JanusConfig.from_pretrained(str(path), local_files_only=True)
    return SGTJanusForConditionalGeneration if stem_channels(config) else JanusForConditionalGeneration

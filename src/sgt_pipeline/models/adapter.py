"""``JanusAdapter``: the one model interface the trainer and evaluators use.

It wraps a ``transformers.JanusForConditionalGeneration`` and its ``JanusProcessor`` — the tiny embedded model or
a real Janus-Pro directory — and reads every size, special token and the chat format from them.

Sequences (see prompts.py): left-padded; understanding = prompt (user: image, question; assistant prompt) +
answer + eos, supervised on the answer and eos only; generation = prompt ending with begin-of-image, followed by
the target's VQ tokens, predicted by the generation head at the positions before each of them; proxy = the
same with the input image inside the prompt (its placeholders receive aligned understanding-encoder features
through ``JanusModel.get_image_features`` / ``get_placeholder_mask``) and the *target's* tokens as labels.
A training micro-batch packs every task into one sequence batch (``task_losses``): one vision-encoder and one
language-model call, as Janus trains. Inference methods (answer, option_scores, generate_image,
generate_target, features) live in inference.py.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoProcessor, JanusForConditionalGeneration

from .inference import JanusInference
from .prompts import PromptFormatter, as_image_list, left_pad, position_ids
from .stem import janus_model_class
from .vq import tokenize_images

IGNORE = -100
TASKS = ("understanding", "generation", "proxy")
IMAGE_TASKS = ("generation", "proxy")  # predicted by the generation head


class JanusAdapter(JanusInference):
    """Batches, losses and inference on one Janus model + processor.

        adapter = JanusAdapter(model, processor)  # or JanusAdapter.from_pretrained(local_dir, device, dtype)
        batch = adapter.understanding_batch(images, questions, answers)   # also generation_batch, proxy_batch
        loss = adapter.understanding_loss(batch)                          # also generation_loss, proxy_loss
        losses = adapter.task_losses({"understanding": batch, "proxy": proxy})  # one forward for all tasks
        adapter.answer(images, questions); adapter.generate_target(images, instructions, seed=0)

    Images: uint8 (B, H, W, 3) arrays or lists of (H, W, 3), any size (the processor resizes and pads).
    Batches are dicts of CPU tensors (moved to the model's device by the losses); losses are fp32 scalars, the
    mean cross-entropy over the supervised tokens, and work under ``torch.autocast("cpu", torch.bfloat16)``.
    Train with ``adapter.trainable_parameters()`` (everything but the VQ tokenizer, which stays frozen).
    """

    def __init__(self, model: JanusForConditionalGeneration, processor):
        self.model, self.processor = model, processor
        self.prompts = PromptFormatter(processor)
        self.tokenizer = processor.tokenizer
        generation = model.generation_config
        # from_pretrained does not restore generation_kwargs: generate(mode="image") needs it.
        generation.generation_kwargs = {**(getattr(generation, "generation_kwargs", None) or {}),
                                        "boi_token_id": self.prompts.boi_id}
        for name, value in (("bos_token_id", self.prompts.bos_id), ("pad_token_id", self.prompts.pad_id),
                            ("eos_token_id", self.prompts.eos_id)):
            if getattr(generation, name, None) is None:
                setattr(generation, name, value)
        if self.prompts.image_id != model.config.image_token_id:
            raise ValueError(f"processor image token {self.prompts.image_id} != model's {model.config.image_token_id}")
        grid = model.model.vqmodel.quantize.quant_state_dims
        if grid[0] * grid[1] != self.num_image_tokens:
            raise ValueError(f"processor has {self.num_image_tokens} image tokens, the VQ grid {grid}")

    # ----- loading / saving -----
    @classmethod
    def from_pretrained(cls, path, device: str | torch.device = "cpu", dtype=None, attn_implementation=None):
        """Load model + processor from a local Hugging Face directory (never the hub)."""
        kwargs = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = dtype
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model = janus_model_class(path).from_pretrained(str(path), **kwargs).to(device).eval()
        processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        return cls(model, processor)

    def save_pretrained(self, path) -> Path:
        """Model (safetensors) + generation config + processor (tokenizer, image processor, chat template)."""
        path = Path(path)
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        return path

    @property
    def image_size(self) -> int:
        size = self.processor.image_processor.size
        return int(size["height"] if isinstance(size, dict) else size.height)

    @property
    def num_image_tokens(self) -> int:
        return int(self.processor.num_image_tokens)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained by the three losses: everything but the (frozen) VQ tokenizer."""
        frozen = {id(p) for p in self.model.model.vqmodel.parameters()}
        return [p for p in self.model.parameters() if id(p) not in frozen and p.requires_grad]

    # ----- batches -----
    def understanding_batch(self, images, questions: list[str], answers: list[str]) -> dict:
        """Image + question -> answer: one single-turn conversation per image."""
        return self.conversation_batch(images, [[(q, a)] for q, a in zip(questions, answers, strict=True)])

    def conversation_batch(self, images, conversations: list[list[tuple[str, str]]]) -> dict:
        """One multi-turn conversation (``[(question, answer), ...]``) per image, supervised on every answer:
        one image forward for all of its questions, as LLaVA-style conversation data is trained."""
        if len(conversations) != len(images):
            raise ValueError(f"{len(images)} images but {len(conversations)} conversations")
        rows, labels = [], []
        for turns in conversations:
            ids, supervised = self.prompts.conversation_ids(turns)
            rows.append(ids)
            labels.append([t if s else IGNORE for t, s in zip(ids, supervised)])
        input_ids, attention_mask = left_pad(rows, self.prompts.pad_id)
        labels, _ = left_pad(labels, IGNORE)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
                "pixel_values": self.prompts.pixel_values(images)}

    def _image_batch(self, prompts, images, image_tokens, drop_prompt) -> dict:
        prompt_ids, pixel_values = self.prompts.encode(prompts, images, image_mode=True)
        input_ids, attention_mask = left_pad(prompt_ids, self.prompts.pad_id)
        if drop_prompt is not None:
            input_ids = self.prompts.unconditional(input_ids, attention_mask, torch.as_tensor(drop_prompt))
        labels = torch.as_tensor(image_tokens, dtype=torch.long).cpu()
        if labels.shape != (len(prompts), self.num_image_tokens):
            raise ValueError(f"image tokens must be (B, {self.num_image_tokens}); got {tuple(labels.shape)}")
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if pixel_values is not None:
            batch["pixel_values"] = pixel_values
        return batch

    def generation_batch(self, prompts: list[str], image_tokens, drop_prompt=None) -> dict:
        """Text-to-image: prompt -> VQ tokens. ``drop_prompt`` (B,) bool rows become unconditional (CFG)."""
        return self._image_batch([self.prompts.image_prompt(p) for p in prompts], None, image_tokens, drop_prompt)

    def proxy_batch(self, images, instructions: list[str], target_tokens, drop_prompt=None) -> dict:
        """Input image (understanding path) + instruction -> the TARGET's VQ tokens (not the input's)."""
        prompts = [self.prompts.image_prompt(text, with_image=True) for text in instructions]
        return self._image_batch(prompts, images, target_tokens, drop_prompt)

    @torch.no_grad()
    def image_tokens(self, images, batch_size: int = 16) -> torch.LongTensor:
        """VQ tokens (B, N) of images, resized by the processor and quantised the original Janus way."""
        images, vq = as_image_list(images), self.model.model.vqmodel
        chunks = []
        for start in range(0, len(images), batch_size):
            pixels = self.processor.image_processor(
                images[start:start + batch_size], do_normalize=False, return_tensors="pt")["pixel_values"]
            chunks.append(tokenize_images(vq, (pixels * 2 - 1).to(self.device)).cpu())
        return torch.cat(chunks)

    # ----- forward pieces -----
    def _to_device(self, batch: dict) -> dict:
        return {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with aligned vision features in the image placeholders of rows that have them."""
        if pixel_values is not None:
            pixel_values = pixel_values[self._image_rows(input_ids).to(pixel_values.device)]
        return self._embed(input_ids, pixel_values)

    def _image_rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B,) bool: rows with image placeholders (a prompt dropped for CFG has none, whatever its pixels)."""
        return (input_ids == self.prompts.image_id).any(-1)

    def _embed(self, input_ids: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """``embed`` given the pixels of exactly the rows with placeholders, in row order: one vision call."""
        embeds = self.model.get_input_embeddings()(input_ids)
        if images is not None and len(images):
            inner = self.model.model
            features = inner.get_image_features(images).pooler_output
            features = features.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
            mask = inner.get_placeholder_mask(input_ids, inputs_embeds=embeds, image_features=features)
            embeds = embeds.masked_scatter(mask, features)
        return embeds

    def _language_model(self, embeds, attention_mask, **kwargs):
        return self.model.model.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids(attention_mask), **kwargs)

    def _packed_hidden(self, batches: dict[str, dict]) -> tuple[torch.Tensor, ...]:
        """Last hidden states (B, T, D) of each batch (on the device), from ONE vision and ONE language-model call.

        A row is its batch's sequence: ``input_ids`` for understanding; for the image tasks the prompt followed
        by the label tokens but the last (or by ``input_tokens`` when the batch has them), embedded for
        generation. Rows are left-padded to the longest one (T); as positions are counted over the attention
        mask, every token keeps its position and attended context, so the hidden states equal those of each
        batch alone (to float rounding), right-aligned.
        """
        slot, n = -1, self.num_image_tokens  # slot: an id marking the positions of the generated image tokens
        ids, masks, images, generated = [], [], [], []
        for task, batch in batches.items():
            input_ids, mask = batch["input_ids"], batch["attention_mask"]
            if "pixel_values" in batch:
                images.append(batch["pixel_values"][self._image_rows(input_ids)])
            if task in IMAGE_TASKS:  # teacher forcing: the label tokens, or the noised copy training feeds
                generated.append(batch.get("input_tokens", batch["labels"])[:, :-1])
                input_ids, mask = F.pad(input_ids, (0, n - 1), value=slot), F.pad(mask, (0, n - 1), value=1)
            ids.append(input_ids)
            masks.append(mask)
        length = max(row.shape[1] for row in ids)
        ids = torch.cat([F.pad(row, (length - row.shape[1], 0), value=self.prompts.pad_id) for row in ids])
        mask = torch.cat([F.pad(row, (length - row.shape[1], 0), value=0) for row in masks])
        slots = ids == slot
        embeds = self._embed(ids.masked_fill(slots, self.prompts.pad_id), torch.cat(images) if images else None)
        if generated:
            image_embeds = self.model.prepare_embeddings_for_image_generation(torch.cat(generated))
            embeds = embeds.masked_scatter(slots[..., None], image_embeds.to(embeds.dtype))
        hidden = self._language_model(embeds, mask).last_hidden_state
        return hidden.split([len(batch["input_ids"]) for batch in batches.values()])

    def _text_logits(self, hidden: torch.Tensor, labels: torch.Tensor):
        """(logits (M, V) float, targets (M,), row of each) at the supervised tokens; hidden right-aligned."""
        labels = labels[:, 1:]
        selected = labels != IGNORE
        logits = self.model.lm_head(hidden[:, -labels.shape[1] - 1:-1][selected]).float()
        return logits, labels[selected], selected.nonzero()[:, 0]

    def _image_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Generation-head logits (B, N, codebook) at the last N positions: the prompt's last token (begin-of-
        image) and every image token but the last each predict the next image token."""
        return self.model.model.generation_head(hidden[:, -self.num_image_tokens:]).float()

    def supervised_logits(self, batch: dict):
        """(logits (M, V) float, targets (M,), row of each) for the supervised text tokens of a batch."""
        batch = self._to_device(batch)
        return self._text_logits(self._packed_hidden({"understanding": batch})[0], batch["labels"])

    def image_logits(self, batch: dict) -> torch.Tensor:
        """Generation-head logits (B, N, codebook) predicting each label token from the tokens before it."""
        return self._image_logits(self._packed_hidden({"generation": self._to_device(batch)})[0])

    # ----- losses (mean cross-entropy over the supervised tokens) -----
    def task_losses(self, batches: dict[str, dict]) -> dict[str, torch.Tensor]:
        """``{task: loss}`` for any of understanding / generation / proxy, all tasks in one packed forward
        (per-call overhead dominates a small model's step); each loss equals the task's own ``*_loss``."""
        if set(batches) - set(TASKS):
            raise ValueError(f"unknown tasks {sorted(set(batches) - set(TASKS))}; expected some of {TASKS}")
        if "proxy" in batches and "pixel_values" not in batches["proxy"]:
            raise ValueError("a proxy batch carries the input image (pixel_values); build it with proxy_batch")
        batches = {task: self._to_device(batch) for task, batch in batches.items()}
        losses = {}
        for (task, batch), hidden in zip(batches.items(), self._packed_hidden(batches), strict=True):
            if task in IMAGE_TASKS:
                logits, targets = self._image_logits(hidden).flatten(0, 1), batch["labels"].flatten()
            else:
                logits, targets, _ = self._text_logits(hidden, batch["labels"])
            losses[task] = F.cross_entropy(logits, targets)
        return losses

    def understanding_loss(self, batch: dict) -> torch.Tensor:
        return self.task_losses({"understanding": batch})["understanding"]

    def generation_loss(self, batch: dict) -> torch.Tensor:
        return self.task_losses({"generation": batch})["generation"]

    def proxy_loss(self, batch: dict) -> torch.Tensor:
        return self.task_losses({"proxy": batch})["proxy"]

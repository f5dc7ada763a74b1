"""Language-model internals for analysis (probes, attention shares): ``Features`` and how they are collected."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .prompts import position_ids


@dataclass
class Features:
    """What the language model computes on a batch of (image, question) prompts (left-padded, length L).

    hidden_states: num_layers + 1 tensors (B, L, D): the input embeddings, then each decoder layer's output
        (the last one after the final norm, as transformers reports it).
    attentions: num_layers tensors (B, heads, L, L) (eager attention), or None if not requested.
    input_ids, attention_mask: (B, L); padding positions have attention_mask 0.
    image_mask / question_mask: (B, L) bool — the image placeholder positions (which carry the aligned vision
        features) and the tokens spelling the question.
    image_positions: (B, N) long — the image placeholder positions, in order.
    question_positions: per row, a (n_i,) long tensor of the question token positions.
    last_positions: (B,) — the last prompt position (where the answer's first token is predicted).
    """

    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    image_mask: torch.Tensor
    question_mask: torch.Tensor
    image_positions: torch.Tensor
    question_positions: list[torch.Tensor]
    last_positions: torch.Tensor


@contextmanager
def attention_implementation(model, implementation: str | None):
    """Temporarily switch the model's attention implementation (e.g. to "eager" to get attention weights)."""
    previous = model.config._attn_implementation
    if implementation is None or implementation == previous:
        yield
        return
    model.set_attn_implementation(implementation)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


def locate_features(adapter, prompt_ids, input_ids, attention_mask, embeds, questions, output_attentions) -> Features:
    model = adapter.model
    with attention_implementation(model, "eager" if output_attentions else None):
        out = model.model.language_model(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids(attention_mask),
            output_hidden_states=True,
            output_attentions=output_attentions,
        )
    length = input_ids.shape[1]
    image_mask = input_ids == adapter.prompts.image_id
    question_mask = torch.zeros_like(image_mask)
    question_positions = []
    for row, (ids, question) in enumerate(zip(prompt_ids, questions)):
        offset = length - len(ids)
        positions = torch.as_tensor([offset + p for p in adapter.prompts.locate(ids, question)], dtype=torch.long)
        question_positions.append(positions)
        question_mask[row, positions.to(question_mask.device)] = True
    image_positions = image_mask.nonzero()[:, 1].reshape(input_ids.shape[0], -1)
    return Features(
        hidden_states=tuple(h.detach() for h in out.hidden_states),
        attentions=tuple(a.detach() for a in out.attentions) if output_attentions else None,
        input_ids=input_ids,
        attention_mask=attention_mask,
        image_mask=image_mask,
        question_mask=question_mask,
        image_positions=image_positions,
        question_positions=question_positions,
        last_positions=torch.full((input_ids.shape[0],), length - 1, dtype=torch.long),
    )

"""Decoding loops on a ``JanusForConditionalGeneration`` with a KV cache: greedy text and CFG image sampling.

Both start from prompt *embeddings* (so an input image's aligned vision features can be part of the prompt,
which ``generate(generation_mode="image")`` does not support) and left-padded attention masks.
"""

from __future__ import annotations

import inspect
import functools

import torch

from .prompts import position_ids


@functools.cache
def _cache_name(forward) -> str:
    # transformers 5.24 renamed the KV-cache argument and output `past_key_values` to `cache` (the old name
    # warns, and goes in 5.40); use whichever the installed version has.
    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def run_with_cache(language_model, kv_cache=None, **inputs):
    """``language_model(**inputs, use_cache=True)`` continuing from ``kv_cache``; returns (output, new cache)."""
    name = _cache_name(type(language_model).forward)
    out = language_model(**inputs, use_cache=True, **{name: kv_cache})
    return out, getattr(out, name)


def _step(language_model, embeds, attention_mask, positions, kv_cache):
    out, kv_cache = run_with_cache(language_model, kv_cache, inputs_embeds=embeds, attention_mask=attention_mask,
                                   position_ids=positions)
    return out.last_hidden_state[:, -1], kv_cache


@torch.no_grad()
def greedy_text(model, embeds: torch.Tensor, attention_mask: torch.Tensor, eos_id: int, max_new_tokens: int):
    """Greedy continuation (B, <= max_new_tokens) of prompt embeddings; rows stop after eos (then padded with eos)."""
    lm = model.model.language_model
    embed_tokens = model.get_input_embeddings()
    positions = position_ids(attention_mask)
    hidden, cache = _step(lm, embeds, attention_mask, positions, None)
    batch = embeds.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=embeds.device)
    tokens = []
    for step in range(max_new_tokens):
        next_token = model.lm_head(hidden).float().argmax(-1)
        next_token = torch.where(done, torch.full_like(next_token, eos_id), next_token)
        tokens.append(next_token)
        done |= next_token == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
        positions = positions[:, -1:] + 1
        step_embeds = embed_tokens(next_token[:, None]).to(embeds.dtype)
        hidden, cache = _step(lm, step_embeds, attention_mask, positions, cache)
    return torch.stack(tokens, dim=1) if tokens else torch.zeros(batch, 0, dtype=torch.long)


@torch.no_grad()
def sample_image_tokens(
    model,
    cond_embeds: torch.Tensor,
    uncond_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor,
    num_tokens: int,
    cfg_scale: float = 5.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.LongTensor:
    """Sample ``num_tokens`` VQ tokens after prompts that end with the begin-of-image token.

    Classifier-free guidance as in Janus: logits = u + cfg_scale * (c - u), from the conditional rows and the
    unconditional rows (same length and mask, run as one doubled batch); ``uncond_embeds=None`` or
    ``cfg_scale == 1`` uses the conditional logits alone. ``temperature <= 0`` is greedy (argmax);
    otherwise softmax(logits / temperature), optionally restricted to the ``top_k`` best codes.
    """
    batch = cond_embeds.shape[0]
    guided = uncond_embeds is not None and cfg_scale != 1.0
    embeds = torch.cat([cond_embeds, uncond_embeds.to(cond_embeds.dtype)]) if guided else cond_embeds
    mask = torch.cat([attention_mask, attention_mask]) if guided else attention_mask
    lm, head = model.model.language_model, model.model.generation_head
    positions = position_ids(mask)
    hidden, cache = _step(lm, embeds, mask, positions, None)
    tokens = torch.zeros(batch, num_tokens, dtype=torch.long, device=cond_embeds.device)
    for i in range(num_tokens):
        logits = head(hidden).float()
        if guided:
            cond, uncond = logits[:batch], logits[batch:]
            logits = uncond + cfg_scale * (cond - uncond)
        if temperature <= 0:
            next_token = logits.argmax(-1)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                threshold = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < threshold, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            next_token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
        tokens[:, i] = next_token
        if i == num_tokens - 1:
            break
        step_tokens = torch.cat([next_token, next_token]) if guided else next_token
        step_embeds = model.prepare_embeddings_for_image_generation(step_tokens[:, None]).to(embeds.dtype)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        positions = positions[:, -1:] + 1
        hidden, cache = _step(lm, step_embeds, mask, positions, cache)
    return tokens

"""Where the language model looks: attention allocation per layer, and pooled image features for probes.

Both read ``models.features.Features`` (``JanusAdapter.features(images, questions)``); a list of Features
(one per batch, in order) is accepted wherever one is, so large sets can be collected batch by batch.

Attention allocation (``attention_allocation``), per layer. Query groups: the QUESTION tokens
(``question_positions``) and the LAST prompt position (which predicts the answer's first token). Key groups
of a prompt: ``image`` (placeholder positions), ``question`` and ``other`` (every other non-padding
position: bos, role tags, ...), so image + question + other shares sum to 1. For one query row and head,
a group's share is its attention mass over the mass on all non-padding keys (padding keys get ~0 weight
anyway). Shares are averaged over heads and the prompt's query positions, then over prompts (every prompt
counts once, whatever its question length).

Objects vs background: image token t covers cell t of the g x g patch grid (g = sqrt(num image tokens),
row-major, as the ViT patchifies). Given a foreground mask (H, W) per prompt in the frame the model sees
(the square model input; for non-square images apply the processor's resize/pad first), pixel (i, j) lies in
cell (i * g // H, j * g // W); a token is an OBJECT token iff at least half of its cell's pixels are
foreground (``OBJECT_FRACTION``). Per prompt, ``object_share`` = attention mass on object tokens / mass on
all image tokens (pooled over heads and query positions of that prompt), and ``object_ratio`` =
object_share / (object tokens / image tokens): > 1 means attention concentrates on objects. Prompts with no
object token or only object tokens have no ratio (NaN, left out of the mean).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from sgt_pipeline.models.features import Features

OBJECT_FRACTION = 0.5
QUERY_GROUPS = ("question", "last")
KEY_GROUPS = ("image", "question", "other")
ATTENTION_COLUMNS = (
    "layer",
    *(f"{q}_{k}" for q in QUERY_GROUPS for k in (*(f"{g}_share" for g in KEY_GROUPS), "object_share", "object_ratio")),
    "object_token_fraction",
)


def _batches(features: Features | Sequence[Features]) -> list[Features]:
    return [features] if isinstance(features, Features) else list(features)


def pooled_image_features(features: Features | Sequence[Features]) -> np.ndarray:
    """(num_layers + 1, N, D) float32: per layer, the mean hidden state over each prompt's image tokens."""
    pooled = []
    for batch in _batches(features):
        index = batch.image_positions.to(batch.hidden_states[0].device)
        layers = []
        for hidden in batch.hidden_states:
            gathered = torch.gather(hidden, 1, index[:, :, None].expand(-1, -1, hidden.shape[-1]))
            layers.append(gathered.float().mean(1))
        pooled.append(torch.stack(layers).cpu().numpy())
    return np.concatenate(pooled, axis=1)


def object_tokens(foreground_masks, num_image_tokens: int, threshold: float = OBJECT_FRACTION) -> np.ndarray:
    """(N, num_image_tokens) bool: image tokens whose patch is at least ``threshold`` foreground."""
    masks = np.asarray(foreground_masks, dtype=bool)
    masks = masks[None] if masks.ndim == 2 else masks
    grid = math.isqrt(num_image_tokens)
    if grid * grid != num_image_tokens:
        raise ValueError(f"{num_image_tokens} image tokens do not form a square grid")
    height, width = masks.shape[1:]
    if height < grid or width < grid:
        raise ValueError(f"masks {height}x{width} are smaller than the {grid}x{grid} patch grid")
    cell = ((np.arange(height) * grid // height)[:, None] * grid + (np.arange(width) * grid // width)[None, :]).ravel()
    pixels = np.bincount(cell, minlength=num_image_tokens)
    fraction = np.stack([np.bincount(cell, weights=m.ravel(), minlength=num_image_tokens) for m in masks]) / pixels
    return fraction >= threshold


def _group_masses(batch: Features, attention: torch.Tensor, objects: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per query group: (B,) shares of key groups and pooled image / object masses, averaged over heads."""
    valid = batch.attention_mask.bool()
    image = batch.image_mask & valid
    question = batch.question_mask & valid & ~image
    object_keys = torch.zeros_like(image)
    object_keys.scatter_(1, batch.image_positions, objects)
    keys = torch.stack([valid, image, question, valid & ~image & ~question, object_keys], -1).to(attention.dtype)
    # masses[b, h, i, g] = attention of query i (head h) on key group g.
    masses = torch.einsum("bhij,bjg->bhig", attention.to(keys.device), keys)
    shares = masses[..., 1:4] / masses[..., :1].clamp_min(1e-30)
    heads_shares, heads_masses = shares.mean(1), masses[..., [1, 4]].mean(1)  # (B, L, 3), (B, L, 2)
    rows = torch.arange(attention.shape[0], device=keys.device)
    out = {}
    question_rows = torch.zeros_like(valid)
    for row, positions in enumerate(batch.question_positions):
        question_rows[row, positions.to(valid.device)] = True
    for group, rows_mask in (("question", question_rows), ("last", None)):
        if rows_mask is None:
            last = batch.last_positions.to(keys.device)
            share, pooled = heads_shares[rows, last], heads_masses[rows, last]
        else:
            weight = rows_mask.to(attention.dtype)[..., None]
            count = weight.sum(1)  # 0 for a prompt without question tokens -> NaN shares
            share, pooled = (heads_shares * weight).sum(1) / count, (heads_masses * weight).sum(1) / count
        out[group] = torch.cat([share, (pooled[:, 1] / pooled[:, 0])[:, None]], 1)  # image, question, other, object
    return out


def attention_rows(features: Features | Sequence[Features], foreground_masks) -> np.ndarray:
    """(num_layers, N, 2 x 4 + 1) per-prompt values behind ``attention_allocation`` (column order of the frame)."""
    batches = _batches(features)
    masks = np.asarray(foreground_masks, dtype=bool)
    start, per_batch = 0, []
    for batch in batches:
        if batch.attentions is None:
            raise ValueError("Features carry no attentions; collect them with output_attentions=True")
        size, tokens = batch.image_positions.shape
        objects_np = object_tokens(masks[start : start + size], tokens)
        start += size
        objects = torch.as_tensor(objects_np, device=batch.image_mask.device)
        fraction = torch.as_tensor(objects_np.mean(1), dtype=torch.float64)
        layers = []
        for attention in batch.attentions:
            groups = _group_masses(batch, attention.double(), objects)
            values = []
            for group in QUERY_GROUPS:
                share = groups[group].cpu()
                ratio = share[:, 3] / fraction
                ratio[(fraction == 0) | (fraction == 1)] = torch.nan
                values.append(torch.cat([share, ratio[:, None]], 1))
            layers.append(torch.cat([*values, fraction[:, None]], 1))
        per_batch.append(torch.stack(layers).numpy())
    if start != len(masks):
        raise ValueError(f"{len(masks)} foreground masks for {start} prompts")
    return np.concatenate(per_batch, axis=1)


def attention_allocation(features: Features | Sequence[Features], foreground_masks) -> pd.DataFrame:
    """One row per layer: attention shares of the question tokens and the last position (see module doc).

    ``foreground_masks``: (N, H, W) bool, one per prompt in order (e.g. the union of its instance masks).
    """
    values = attention_rows(features, foreground_masks)
    with warnings.catch_warnings():  # a column that is NaN for every prompt stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(values, axis=1)
    frame = pd.DataFrame(means, columns=list(ATTENTION_COLUMNS[1:]))
    frame.insert(0, "layer", np.arange(len(frame)))
    return frame

"""A content-addressed disk cache of VQ tokens, so a frozen tokenizer encodes the same images only once.

Every training run tokenises its generation images and proxy targets up front; for the embedded default
that is 4000 images and about 27 s on 2 cores, repeated by every post-training run, sweep trial and study
arm. The key hashes what the tokens depend on: the tokenizer's encoding weights, the image processor's
settings and the images themselves, so a retrained VQ or a re-rendered target can never be served stale
tokens. Files are safetensors, written atomically (by rank 0 only under torchrun).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sgt_pipeline.io import atomic_write

# Only these parts of the VQ model decide the tokens (the decoder does not).
_ENCODING_PREFIXES = ("encoder.", "quant_conv.", "quantize.")


def tokens_key(adapter, images: np.ndarray) -> str:
    """Hex digest of the VQ encoder weights, the processor settings and ``images`` (bytes, shape, dtype)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(adapter.model.model.vqmodel.state_dict().items()):
        if name.startswith(_ENCODING_PREFIXES):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(adapter.processor.image_processor.to_json_string().encode())
    images = np.ascontiguousarray(images)
    digest.update(f"{images.shape}{images.dtype}".encode() + images.tobytes())
    return digest.hexdigest()


def cached_image_tokens(adapter, images: np.ndarray, cache_dir: str | Path | None) -> torch.LongTensor:
    """``adapter.image_tokens(images)``, read from ``cache_dir`` when it holds them (None: no cache)."""
    if cache_dir is None:
        return adapter.image_tokens(images)
    path = Path(cache_dir) / f"{tokens_key(adapter, images)}.safetensors"
    if path.is_file():
        return load_file(path)["tokens"]
    tokens = adapter.image_tokens(images)
    atomic_write(path, lambda tmp: save_file({"tokens": tokens.contiguous()}, str(tmp)))
    return tokens

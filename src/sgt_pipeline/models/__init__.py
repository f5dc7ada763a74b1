"""Model layer: one adapter interface over ``transformers.JanusForConditionalGeneration`` + the tiny embedded Janus.

    from sgt_pipeline.models import JanusAdapter, TinyJanusConfig, build_tiny_janus, build_word_tokenizer, build_processor
    from sgt_pipeline.world import WorldConfig, vocabulary

    tokenizer = build_word_tokenizer(vocabulary(WorldConfig()))
    config = TinyJanusConfig()
    processor = build_processor(tokenizer, config.image_size, config.num_image_tokens)
    adapter = JanusAdapter(build_tiny_janus(config, tokenizer), processor)
    adapter = JanusAdapter.from_pretrained("path/to/Janus-Pro-1B")          # a real local checkpoint

Importing this package is cheap; transformers is imported on first use of a name.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "JanusAdapter": "adapter",
    "Features": "features",
    "TinyJanusConfig": "config",
    "build_tiny_janus": "config",
    "count_parameters": "config",
    "janus_config": "config",
    "build_word_tokenizer": "tokenizer",
    "build_processor": "tokenizer",
    "PromptFormatter": "prompts",
    "tokenize_images": "vq",
    "vq_forward": "vq",
    "VQOutput": "vq",
    "set_vq_trainable": "vq",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

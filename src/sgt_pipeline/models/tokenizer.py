"""Word-level tokenizer and Janus processor for the tiny embedded model.

The tiny model talks the same protocol as a real Janus-Pro checkpoint: a ``JanusProcessor`` whose tokenizer
carries the extra special tokens ``image_token`` / ``boi_token`` / ``eoi_token`` and whose saved
``chat_template`` formats every prompt (``processor.apply_chat_template``). The adapter reads all of these
from the processor, so nothing here is referenced by name outside this module.

    from sgt_pipeline.world import WorldConfig, vocabulary
    tokenizer = build_word_tokenizer(vocabulary(WorldConfig()))
    processor = build_processor(tokenizer, image_size=64, num_image_tokens=64)
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import JanusImageProcessor, JanusProcessor, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
IMAGE, BOI, EOI = "<image_placeholder>", "<begin_of_image>", "<end_of_image>"
USER, ASSISTANT = "<|User|>", "<|Assistant|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, IMAGE, BOI, EOI, USER, ASSISTANT)

# Minimal chat template, same shape of output as Janus-Pro's: user turn (image placeholder, then text),
# assistant turns closed by eos except the last one, generation prompt = the assistant role tag. Rendered:
# "<|User|> <image_placeholder> how many shapes are there? <|Assistant|>" (+ " two" for an answer).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '" + USER + "' if message['role'] == 'user' else ' " + ASSISTANT + "' -}}"
    "{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' -%}{{- ' " + IMAGE + "' -}}"
    "{%- elif content['type'] == 'text' -%}{{- ' ' + content['text'] | trim -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if message['role'] != 'user' and not loop.last -%}{{- ' " + EOS + "' -}}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- ' " + ASSISTANT + "' -}}{%- endif -%}"
)


def build_word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` (+ special tokens), adding bos like Llama.

    Pre-tokenization splits on whitespace and isolates punctuation ("shapes?" -> "shapes", "?"); decoding
    joins words with spaces and the standard clean-up re-attaches "?" and ",", so shapes-world text
    round-trips. Unknown words map to ``<unk>``.
    """
    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *words):
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Lower-case before lookup: prompts such as SGT's "Segment instances with different colors." keep
    # their spelling, the vocabulary stays lower-case (special tokens are matched before normalising).
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins with spaces, cleans " ?" -> "?"
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE, "boi_token": BOI, "eoi_token": EOI},
        clean_up_tokenization_spaces=True,
        model_max_length=4096,
    )


def build_processor(
    tokenizer: PreTrainedTokenizerFast, image_size: int, num_image_tokens: int
) -> JanusProcessor:
    """A ``JanusProcessor`` at ``image_size`` x ``image_size`` with ``num_image_tokens`` placeholders per image.

    Images are normalised to [-1, 1] (mean = std = 0.5, as Janus-Pro's preprocessor), which is also the
    range the VQ tokenizer works in.
    """
    image_processor = JanusImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    return JanusProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
        num_image_tokens=num_image_tokens,
    )

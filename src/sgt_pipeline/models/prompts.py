"""Prompt formatting and token layout for Janus, driven entirely by the loaded processor.

Every prompt string comes from ``processor.apply_chat_template`` (the tiny model's saved template, or the one a
real Janus-Pro processor ships); the processor then expands each image placeholder into
``boi + image_token * num_image_tokens + eoi`` and, for image generation (``generation_mode="image"``),
appends the begin-of-image token. Special tokens (pad, bos, eos, image, boi) are read from the tokenizer.

Layout of every batch: sequences are LEFT-padded (pad positions masked out), so image tokens appended after a
prompt sit at the same positions in every row; position ids are ``cumsum(attention_mask) - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def as_image_list(images) -> list[np.ndarray]:
    """uint8 (B, H, W, 3) array / tensor or a list of (H, W, 3) arrays -> list of (H, W, 3) uint8 arrays."""
    if isinstance(images, torch.Tensor):
        images = images.cpu().numpy()
    return [np.ascontiguousarray(np.asarray(image, dtype=np.uint8)) for image in images]


def _pad(rows: Sequence[Sequence[int]], value: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in rows)
    values = torch.full((len(rows), length), value, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            span = slice(length - len(row), length) if left else slice(0, len(row))
            values[i, span] = torch.as_tensor(list(row), dtype=torch.long)
            mask[i, span] = 1
    return values, mask


def left_pad(rows: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad integer rows -> (values (B, L) long, attention mask (B, L) long)."""
    return _pad(rows, value, left=True)


def right_pad(rows: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad integer rows -> (values (B, L) long, attention mask (B, L) long): rows that continue a
    left-padded prompt (and its KV cache) directly."""
    return _pad(rows, value, left=False)


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over attended tokens only (left padding does not shift them)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class PromptFormatter:
    """Chat-template formatting and tokenisation through one ``JanusProcessor``."""

    def __init__(self, processor):
        self.processor = processor
        # Token ids per distinct prompt / answer text (see ``encode``).
        self._ids_cache: dict[tuple[str, bool, bool], list[int]] = {}
        self._answer_cache: dict[tuple[str, str], list[int]] = {}
        self._conversation_cache: dict[tuple[tuple[str, str], ...], tuple[list[int], list[bool]]] = {}
        tok = processor.tokenizer
        self.tokenizer = tok
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.bos_id = tok.bos_token_id
        self.eos_id = tok.eos_token_id
        self.image_id = tok.convert_tokens_to_ids(processor.image_token)
        self.boi_id = tok.convert_tokens_to_ids(processor.image_start_token)
        self.eoi_id = tok.convert_tokens_to_ids(processor.image_end_token)

    # ----- strings (chat template) -----
    def _render(self, content: list[dict], answer: str | None = None) -> str:
        messages = [{"role": "user", "content": content}]
        if answer is None:
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=False)

    def question_prompt(self, question: str) -> str:
        """User turn (image, then question) + assistant generation prompt."""
        return self._render([{"type": "image"}, {"type": "text", "text": question}])

    def answer_text(self, question: str, answer: str) -> str:
        """The text the template puts after ``question_prompt`` for this answer (e.g. " two")."""
        prompt = self.question_prompt(question)
        full = self._render([{"type": "image"}, {"type": "text", "text": question}], answer)
        if not full.startswith(prompt):
            raise ValueError("chat template: the prompt with an assistant answer does not extend the generation prompt")
        return full[len(prompt):]

    def image_prompt(self, text: str, with_image: bool = False) -> str:
        """User turn (``text``, then optionally an input image) + assistant prompt, for image generation.

        The instruction comes BEFORE the input image: then only fixed template tokens separate the image from
        the generated one, so input patch i and output token i sit at the same distance whatever the
        instruction's length, an offset RoPE attention learns once. Image-first (as for questions) made that
        distance vary with the instruction, and the tiny model's proxy targets barely depended on the input
        (held-out proxy CE 0.95 vs 1.04 with a wrong image, against 0.84 vs 1.48 instruction-first).
        """
        content = [{"type": "text", "text": text}]
        return self._render(content + ([{"type": "image"}] if with_image else []))

    # ----- token ids -----
    def encode(self, texts: list[str], images=None, image_mode: bool = False):
        """Per-row unpadded token ids (list of lists) and pixel_values (or None) through the processor.

        A row's ids depend only on its text (and whether it carries an image), so they are cached per
        distinct text: training draws the same questions and instructions over and over, and running the
        chat template and tokenizer per row was most of the batch-building time.
        """
        with_image = images is not None
        ids = [self._ids(text, with_image, image_mode) for text in texts]
        return ids, (self.pixel_values(images) if with_image else None)

    def _ids(self, text: str, with_image: bool, image_mode: bool) -> list[int]:
        key = (text, with_image, image_mode)
        if key not in self._ids_cache:
            kwargs = {"generation_mode": "image"} if image_mode else {}
            # The processor expands the image placeholder only when it is given an image; its pixels do not
            # change the ids, so a tiny blank one stands in.
            blank = [np.zeros((8, 8, 3), dtype=np.uint8)] if with_image else None
            out = self.processor(text=[text], images=blank, return_tensors="pt", **kwargs)
            self._ids_cache[key] = out["input_ids"][0][out["attention_mask"][0].bool()].tolist()
        return list(self._ids_cache[key])

    def conversation_ids(self, turns: Sequence[tuple[str, str]]) -> tuple[list[int], list[bool]]:
        """Token ids of a conversation about one image — the image and the first question in the first user
        turn, then each answer and the next question — and per token whether it is supervised (the answers,
        each closed by eos). One turn gives exactly the ids of ``question_prompt`` + ``answer_ids``.

        Each piece is the text the chat template adds for it (so any template that extends its rendering
        turn by turn works); a template that opens a user turn with the eos closing the previous answer
        has that eos counted once, with the answer.
        """
        key = tuple((str(q), str(a)) for q, a in turns)
        if not key:
            raise ValueError("a conversation needs at least one (question, answer) turn")
        if key not in self._conversation_cache:
            messages: list[dict] = []
            ids: list[int] = []
            supervised: list[bool] = []
            rendered = ""
            for k, (question, answer) in enumerate(key):
                content = [{"type": "image"}] if k == 0 else []
                messages.append({"role": "user", "content": [*content, {"type": "text", "text": question}]})
                prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
                if k == 0:
                    piece = self._ids(prompt, True, False)
                else:
                    piece = self._text_ids(self._extension(rendered, prompt))
                    piece = piece[1:] if piece[:1] == [self.eos_id] else piece
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
                rendered = self.processor.apply_chat_template(messages, add_generation_prompt=False)
                answer_ids = self._text_ids(self._extension(prompt, rendered))
                if answer_ids[-1:] != [self.eos_id]:
                    answer_ids.append(self.eos_id)
                ids += piece + answer_ids
                supervised += [False] * len(piece) + [True] * len(answer_ids)
            self._conversation_cache[key] = ids, supervised
        ids, supervised = self._conversation_cache[key]
        return list(ids), list(supervised)

    @staticmethod
    def _extension(prefix: str, text: str) -> str:
        if not text.startswith(prefix):
            raise ValueError("chat template: a longer conversation does not extend the shorter one's rendering")
        return text[len(prefix):]

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def pixel_values(self, images) -> torch.Tensor:
        return self.processor.image_processor(as_image_list(images), return_tensors="pt")["pixel_values"]

    def answer_ids(self, question: str, answer: str) -> list[int]:
        """Token ids of the answer continuation, ending with eos."""
        key = (question, answer)
        if key not in self._answer_cache:
            ids = self.tokenizer(self.answer_text(question, answer), add_special_tokens=False)["input_ids"]
            self._answer_cache[key] = ids if ids and ids[-1] == self.eos_id else ids + [self.eos_id]
        return list(self._answer_cache[key])

    def unconditional(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Replace the prompt of the selected rows by padding, as Janus does for classifier-free guidance.

        Every attended token except bos and the final begin-of-image token becomes pad (still attended), so
        the text AND any input image (its placeholder, boi and eoi tokens) are removed from the condition.
        """
        ids = input_ids.clone()
        keep = (ids == self.bos_id) if self.bos_id is not None else torch.zeros_like(ids, dtype=torch.bool)
        keep[:, -1] = True
        drop = rows.to(ids.device).bool()[:, None] & attention_mask.bool() & ~keep
        return ids.masked_fill(drop, self.pad_id)

    def locate(self, ids: Sequence[int], text: str) -> list[int]:
        """Positions of the tokens spelling the LAST occurrence of ``text`` in ``ids`` (whitespace- and
        case-insensitive: a lower-casing tokenizer decodes "Describe" as "describe")."""
        pieces = ["".join(self.tokenizer.decode([t]).split()).lower() for t in ids]
        target = "".join(text.split()).lower()
        joined = "".join(pieces)
        start = joined.rfind(target)
        if not target or start < 0:
            return []
        end, positions, offset = start + len(target), [], 0
        for position, piece in enumerate(pieces):
            if piece and offset < end and offset + len(piece) > start:
                positions.append(position)
            offset += len(piece)
        return positions

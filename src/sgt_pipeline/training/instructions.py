"""Instruction prompts: one list per proxy kind, sampled per example (as SGT samples from a list).

The instance prompts are SGT's own. Every word here must be in the tokenizer's vocabulary; the tiny
model's tokenizer is built from ``instruction_words()`` plus the shapes world's vocabulary.
"""

from __future__ import annotations

PROXY_INSTRUCTIONS: dict[str, tuple[str, ...]] = {
    "reconstruction": ("Reconstruct the image.", "Repeat the image exactly."),
    "edge": ("Draw the edges of the image.", "Render the edge map of the image."),
    "depth": ("Estimate the depth of the image.", "Render the depth map, near is bright."),
    "semantic": ("Segment the image by category with different colors.",
                 "Render each category in its own color."),
    "instance": ("Segment instances with different colors.",
                 "Render each instance mask in a different color."),
    "panoptic": ("Segment every region with a different color.",
                 "Render each region of the image in a different color."),
}

# Captioning as an understanding task: the question asked, the caption is the answer.
CAPTION_QUESTION = "Describe the image."


def instruction_for(kind: str, example_index: int) -> str:
    """The instruction of one proxy example (deterministic, cycling through the kind's list)."""
    prompts = PROXY_INSTRUCTIONS[kind]
    return prompts[example_index % len(prompts)]


def instruction_words() -> list[str]:
    """Every word of the instructions, lower-cased, punctuation split off."""
    text = " ".join([*(p for ps in PROXY_INSTRUCTIONS.values() for p in ps), CAPTION_QUESTION])
    for mark in ".,?":
        text = text.replace(mark, f" {mark} ")
    return sorted(set(text.lower().split()))

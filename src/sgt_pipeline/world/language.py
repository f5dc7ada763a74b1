"""The small fixed vocabulary shared by questions, answers and captions.

All text is lowercase words separated by spaces; the only punctuation is a trailing "?" on questions
and "," inside captions. ``vocabulary`` lists every word, so a word-level tokenizer can be built from it.
"""

from __future__ import annotations

from .background import BACKGROUND_KINDS
from .config import WorldConfig

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
YES, NO = "yes", "no"

# Every word the templates in questions.py and captions.py use besides config-dependent names.
TEMPLATE_WORDS = (
    "a an the is there are how many what color of in front behind left right above below "
    "on with and background shape shapes"
).split()
PUNCTUATION = ("?", ",")


def plural(category: str) -> str:
    return category + ("es" if category.endswith(("s", "x", "ch", "sh")) else "s")


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def count_word(count: int) -> str:
    return NUMBER_WORDS[count]


def noun_for_count(count: int, noun: str) -> str:
    return noun if count == 1 else plural(noun)


def vocabulary(config: WorldConfig) -> list[str]:
    """Sorted list of every word (and punctuation mark) that questions, answers and captions can use."""
    words = set(TEMPLATE_WORDS) | set(PUNCTUATION) | {YES, NO}
    words |= set(NUMBER_WORDS[: config.max_objects + 1])
    words |= set(config.colors) | set(BACKGROUND_KINDS)
    words |= set(config.categories) | {plural(name) for name in config.categories}
    return sorted(words)


def words_of(text: str) -> list[str]:
    """Split a question or caption into vocabulary words (punctuation marks become their own words)."""
    for mark in PUNCTUATION:
        text = text.replace(mark, f" {mark} ")
    return text.split()

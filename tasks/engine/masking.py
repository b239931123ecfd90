"""Hiding secret values in anything mmstack prints: the one masker every output path uses.

Values are replaced longest first, so a secret that contains another is hidden whole; values
shorter than four characters are left alone (they would mask ordinary words and numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

MASK = "********"
MIN_MASKED_LENGTH = 4


def masker(values: Iterable[object]) -> Callable[[str], str]:
    """A function that hides every one of ``values`` in a text."""
    ordered = sorted({v for v in values if isinstance(v, str) and len(v) >= MIN_MASKED_LENGTH},
                     key=len, reverse=True)

    def mask(text: str) -> str:
        for value in ordered:
            text = text.replace(value, MASK)
        return text

    return mask


def mask_values(text: str, values: Iterable[object]) -> str:
    return masker(values)(text)

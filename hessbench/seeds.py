"""The seed-list syntax of ``hessbench compare --seeds`` and the asv suites (imports nothing
heavy: the asv suites read it in every benchmark process)."""

from __future__ import annotations


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '1,3,5' -> [1, 3, 5]; '7' -> [7]."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError:
            raise ValueError(f"bad seeds {text!r}: use e.g. 0-4 or 0,2,5") from None
    return seeds

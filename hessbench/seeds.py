"""Seeds: the seed-list syntax of ``hessbench compare --seeds`` and the asv suites, and the
checks of a seed or a list of seeds (imports nothing heavy: the asv suites read it in every
benchmark process)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from hessbench.errors import InputError

__all__ = ["SeedError", "check_seed", "check_seeds", "parse_seeds"]

_PART = re.compile(r"(\d+)(?:\s*-\s*(\d+))?")


class SeedError(InputError):
    """A seed that is not a non-negative integer, a malformed or empty seed range, or a seed
    given twice."""


def check_seed(seed: object) -> int:
    """``seed`` if it is a non-negative integer (seeds NumPy's generator), else SeedError."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SeedError(f"seed must be a non-negative integer (0, 1, 2, ...), got {seed!r}")
    return seed


def check_seeds(seeds: Sequence[object]) -> list[int]:
    """``seeds`` as a list if it is non-empty, every seed is valid and none repeats."""
    seeds = [check_seed(seed) for seed in seeds]
    if not seeds:
        raise SeedError("no seeds given: give at least one, e.g. 0-4 or 0,2,5")
    twice = sorted(seed for seed, count in Counter(seeds).items() if count > 1)
    if twice:
        raise SeedError(f"seed(s) {', '.join(map(str, twice))} given more than once: give each "
                        "seed once (each would be counted as another seed)")
    return seeds


def parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0..4]; '1,3,5' -> [1, 3, 5]; '7' -> [7]; '0-2,5' -> [0, 1, 2, 5].

    Raises :class:`SeedError` naming ``text`` for a part that is not a non-negative integer or
    a range ``LOW-HIGH``, an empty range (``5-0``) or a seed given twice."""
    seeds: list[int] = []
    for part in text.split(","):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise SeedError(f"bad seeds {text!r}: {part.strip()!r} is neither a seed nor a "
                            "range; use non-negative integers, e.g. 0-4 or 0,2,5")
        low = int(match[1])
        high = int(match[2]) if match[2] is not None else low
        if high < low:
            raise SeedError(f"bad seeds {text!r}: the range {part.strip()!r} is empty; write "
                            f"it from low to high, e.g. {high}-{low}")
        seeds += range(low, high + 1)
    try:
        return check_seeds(seeds)
    except SeedError as err:
        raise SeedError(f"bad seeds {text!r}: {err}") from None

"""argparse types and option parsing shared by the ``hessbench`` commands (:mod:`hessbench.cli`
and the command modules it registers)."""

from __future__ import annotations

import argparse
import ast
import sys
from typing import Any, Callable, Sequence

from hessbench.errors import InputError
from hessbench.seeds import check_seed

THREADS_HELP = ("torch CPU threads per process: auto (default: the idle cores, shared by this "
                "machine's processes) or N")


def seed_arg(text: str) -> int:
    """argparse type of ``--seed``: a non-negative integer."""
    try:
        return check_seed(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer (0, 1, 2, ...), got "
                                         f"{text!r}") from None


def word_or_count(word: str, what: str) -> Callable[[str], str | int]:
    """argparse type: ``word`` (e.g. ``all``) or a positive count of ``what``."""
    def parse(text: str) -> str | int:
        if text == word:
            return text
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise argparse.ArgumentTypeError(f"must be {word!r} or a positive number of {what}, "
                                             f"got {text!r}")
        return count
    return parse


devices_arg = word_or_count("all", "devices")
threads_arg = word_or_count("auto", "threads")


def use_threads_arg(args: argparse.Namespace, main: bool = True) -> None:
    """Apply ``--threads`` (:mod:`hessbench.threads`) and say so on stderr unless ``--quiet``."""
    from hessbench.threads import use_threads

    _, line = use_threads(args.threads)
    if main and not args.quiet:
        print(line, file=sys.stderr, flush=True)


def key_values(pairs: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """Parse ``key=value`` pairs of ``flag``; values are Python literals where they parse, else
    strings."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{flag} {pair!r} is not of the form KEY=VALUE (see the options "
                             "that hessbench problems / hessbench solvers list)")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out

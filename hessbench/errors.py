"""The user-error base class: what the command line reports in one line (``error: ...``, exit
status 2) instead of a traceback.

Raise a subclass of :class:`UserError` for a problem in what the user asked for or gave (an
unknown name, a bad option value, an unusable output path, a data loader the operator cannot
use, non-deterministic products): its message must say what is wrong and how to fix it.
Anything else escaping the command line is a bug and keeps its traceback.
:class:`InputError` is also a ``ValueError``, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message names it and says how."""


class InputError(UserError, ValueError):
    """A bad value given by the user (option, name, path, data)."""

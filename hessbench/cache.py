"""On-disk cache for checkpoints and references (``$HESSBENCH_CACHE``, default
``~/.cache/hessbench``), keyed by a hash of everything that defines the cached object.

An entry is a JSON file (its description, the commit point) and companion data files in the
same folder (a checkpoint's ``.pt``, a reference's ``-vectors.npz``). :func:`write_entry`
writes the data files first, then the JSON, each atomically (:func:`hessbench.files.atomic_write`).
The JSON records

- ``files_sha256``: the sha256 of each companion file's bytes, and
- ``entry_sha256``: the sha256 of its own other values (canonical JSON: sorted keys, compact).

:func:`read_entry` checks both; :func:`cached_entry` loads or builds an entry under its
:func:`~hessbench.files.entry_lock` (concurrent builders wait for the first, then load what it
wrote). An entry that is unreadable, truncated, invalid JSON, misses a companion, mismatches a
hash or fails the caller's load/verification is moved aside with a one-line
:class:`~hessbench.files.CacheWarning` naming the file, and rebuilt. An entry without hashes
(written before they existed) is *legacy*: if it loads (and verifies), its JSON is rewritten
with the hashes instead of rebuilding it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hessbench.files import atomic_write, entry_lock, move_aside

HASH_KEY = "entry_sha256"
FILES_KEY = "files_sha256"

T = TypeVar("T")
Build = Callable[[], tuple[dict[str, Any], dict[Path, bytes], T]]


def cache_dir() -> Path:
    root = os.environ.get("HESSBENCH_CACHE") or Path.home() / ".cache" / "hessbench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def key_of(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def tensor_digest(tensors: dict[str, Any]) -> str:
    """Hash of named tensors' exact bytes (identifies a checkpoint's weights)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


class CorruptEntry(Exception):
    """A cache file is unusable: ``path`` is the file to move aside, ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def brief(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 120 characters), for one-line warnings."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 120 else text[:117] + "..."


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def values_sha256(record: dict[str, Any]) -> str:
    """The sha256 of a record's values other than ``entry_sha256`` (canonical JSON)."""
    rest = {k: v for k, v in record.items() if k != HASH_KEY}
    blob = json.dumps(rest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def plain(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its hash keys (what callers see)."""
    return {k: v for k, v in record.items() if k not in (HASH_KEY, FILES_KEY)}


def _seal(info: dict[str, Any], files: dict[str, str]) -> dict[str, Any]:
    record = json.loads(json.dumps({**plain(info), FILES_KEY: files}, default=str))
    record[HASH_KEY] = values_sha256(record)
    return record


def _write_json(json_path: Path, record: dict[str, Any]) -> None:
    atomic_write(json_path, json.dumps(record, indent=1) + "\n")


def write_entry(json_path: Path, info: dict[str, Any], payloads: dict[Path, bytes]
                ) -> dict[str, Any]:
    """Write the data files ``payloads`` (path -> bytes), then ``json_path`` (the commit point)
    with ``info`` and the hashes, all atomically. Returns the record as written."""
    for path, data in payloads.items():
        atomic_write(path, data)
    record = _seal(info, {p.name: hashlib.sha256(d).hexdigest() for p, d in payloads.items()})
    _write_json(json_path, record)
    return record


def seal_legacy(json_path: Path, record: dict[str, Any], companions: Sequence[Path]
                ) -> dict[str, Any]:
    """Add the hashes to a legacy entry that loaded (and verified): rewrite its JSON atomically
    with the sha256 of its companion files as they are; the data files are not touched."""
    sealed = _seal(record, {p.name: file_sha256(p) for p in companions})
    _write_json(json_path, sealed)
    return sealed


def read_entry(json_path: Path, companions: Sequence[Path]
               ) -> tuple[dict[str, Any], bool] | None:
    """The record of the entry ``json_path`` and whether it is sealed (carries hashes); ``None``
    when the JSON does not exist. Raises :class:`CorruptEntry` naming the bad file when the
    JSON is unreadable or invalid, a companion is missing, or a recorded hash (of the JSON's
    values or of a companion's bytes) does not match."""
    try:
        text = json_path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptEntry(json_path, f"unreadable ({brief(exc)})") from exc
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptEntry(json_path, f"invalid JSON ({exc})") from exc
    if not isinstance(record, dict):
        raise CorruptEntry(json_path, f"not a JSON object but {type(record).__name__}")
    for path in companions:
        if not path.is_file():
            raise CorruptEntry(json_path, f"its data file {path.name} is missing")
    if HASH_KEY not in record and FILES_KEY not in record:
        return record, False  # legacy: the caller loads (verifies), then seal_legacy
    if record.get(HASH_KEY) != values_sha256(record):
        raise CorruptEntry(json_path, f"its values do not match their {HASH_KEY} "
                                      "(edited or damaged)")
    recorded = record.get(FILES_KEY)
    for path in companions:
        want = recorded.get(path.name) if isinstance(recorded, dict) else None
        if not isinstance(want, str):
            raise CorruptEntry(json_path, f"it records no sha256 for {path.name}")
        try:
            got = file_sha256(path)
        except OSError as exc:
            raise CorruptEntry(path, f"unreadable ({brief(exc)})") from exc
        if got != want:
            raise CorruptEntry(path, f"its sha256 {got[:12]}... differs from {want[:12]}... "
                                     f"recorded in {json_path.name} (truncated or modified)")
    return record, True


def cached_entry(json_path: Path, companions: Sequence[Path],
                 load: Callable[[dict[str, Any]], T], build: Build[T]
                 ) -> tuple[dict[str, Any], T]:
    """Load the entry ``json_path`` (data files ``companions``) or build it, under its lock.

    ``load(record)`` reads (and verifies) the data files; it raises :class:`CorruptEntry` when
    they are unusable. ``build()`` returns ``(info, payloads, result)``: the JSON's values, the
    data files' bytes by path (the companions) and what the caller gets. A corrupt entry is
    moved aside (one-line ``CacheWarning`` naming the file) and rebuilt; a legacy entry that
    loads is sealed. Returns the record without its hash keys and ``load``'s or ``build``'s
    result."""
    with entry_lock(json_path):
        try:
            found = read_entry(json_path, companions)
            if found is not None:
                record, sealed = found
                result = load(record)
                if not sealed:
                    record = seal_legacy(json_path, record, companions)
                return plain(record), result
        except CorruptEntry as exc:
            move_aside(exc.path, exc.reason)
        info, payloads, result = build()
        return plain(write_entry(json_path, info, payloads)), result

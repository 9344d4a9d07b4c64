"""On-disk cache for checkpoints and references (``$HESSBENCH_CACHE``, default
``~/.cache/hessbench``), keyed by a hash of everything that defines the cached object."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


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

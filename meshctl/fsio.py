"""Writing files so that nothing is ever half-written: temp file, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

PUBLIC_FILE = 0o644


def write_atomic(path: Path, data: str | bytes, mode: int = PUBLIC_FILE) -> None:
    """Replace `path` with `data` in one rename; readers see the old file or the new, never part.

    The temp file is a sibling (same filesystem, so the rename is atomic), has `mode` from its
    creation (a key is never readable by others, even briefly) and is synced before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

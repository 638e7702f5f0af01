"""Atomic, permission-aware file writes for certificates and keys.

A sidecar re-reads its certificate files while it runs, so a reader must never see a half
written file: each file is written to a temporary name in the same directory, flushed, and
renamed over the old one. Private keys are created 0600 from the first byte (never chmod-ed
after the fact), in directories that are 0700.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from meshctl.fsio import write_atomic

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create `path` 0700, with a `.gitignore` of `*`: keys stay out of git even when the
    state directory sits inside a work tree and someone runs `git add -A`."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    ignore = path / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, b"# private keys: never commit this directory\n*\n")
    return path


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` so that two processes never create two CAs."""
    fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

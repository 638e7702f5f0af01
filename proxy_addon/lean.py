"""Start lean: only the mitmproxy addons a sidecar uses, optimized bytecode cached.

Bytecode: under `-O`/`-OO` Python needs `.opt-N.pyc` files that pip never writes; with
PYTHONDONTWRITEBYTECODE set (common in containers and CI) every sidecar start would compile
~460 modules again (measured: 3 s of CPU per start). `cache_optimized_bytecode` keeps that
bytecode in a cache directory of its own (`sys.pycache_prefix`, outside every source tree),
so only the first start compiles. MESHCTL_PYCACHE names the directory; "off" disables it.

Addons: `proxy_addon.patches.skip_default_addons` (a patch of mitmproxy's package loading).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_optimized_bytecode() -> None:
    setting = os.environ.get("MESHCTL_PYCACHE", "")
    if setting == "off" or not sys.flags.optimize or not sys.dont_write_bytecode:
        return
    if setting:
        cache = Path(setting)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache = Path(base) / "meshctl" / "pycache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # read-only home: compile in memory as before
    sys.pycache_prefix = str(cache)
    sys.dont_write_bytecode = False

"""Start lean: only the mitmproxy addons a sidecar uses, optimized bytecode cached.

Bytecode: under `-O`/`-OO` Python needs `.opt-N.pyc` files that pip never writes; with
PYTHONDONTWRITEBYTECODE set (common in containers and CI) every sidecar start would compile
~460 modules again (measured: 3 s of CPU per start). `cache_optimized_bytecode` keeps that
bytecode in a cache directory of its own (`sys.pycache_prefix`, outside every source tree),
so only the first start compiles. MESHCTL_PYCACHE names the directory; "off" disables it.

Addons:
`mitmproxy/addons/__init__.py` imports all ~40 default addons (and with them flask, jinja2,
ldap3, the onboarding app...) as soon as any one addon module is imported. Registering the
package without running its `__init__` lets `from mitmproxy.addons import core` load just
that module: measured here, a sidecar's idle RSS drops by about 20 MB and startup is faster.
Call this before anything imports `mitmproxy.addons`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
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


def skip_default_addons() -> None:
    if "mitmproxy.addons" in sys.modules:
        return
    spec = importlib.util.find_spec("mitmproxy.addons")
    if spec is None or spec.submodule_search_locations is None:
        return
    package = types.ModuleType("mitmproxy.addons")
    package.__spec__ = spec
    package.__path__ = list(spec.submodule_search_locations)
    package.__file__ = spec.origin
    sys.modules["mitmproxy.addons"] = package
    import mitmproxy

    mitmproxy.addons = package  # type: ignore[attr-defined]

"""Load only the mitmproxy addons a sidecar uses.

`mitmproxy/addons/__init__.py` imports all ~40 default addons (and with them flask, jinja2,
ldap3, the onboarding app...) as soon as any one addon module is imported. Registering the
package without running its `__init__` lets `from mitmproxy.addons import core` load just
that module: measured here, a sidecar's idle RSS drops by about 20 MB and startup is faster.
Call this before anything imports `mitmproxy.addons`.
"""

from __future__ import annotations

import importlib.util
import sys
import types


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

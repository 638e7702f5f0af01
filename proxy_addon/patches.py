"""Every place the sidecar reaches into mitmproxy's or pyOpenSSL's internals, in one module.

Each patch is guarded: it is made only on the mitmproxy and pyOpenSSL versions it was written
against (`SUPPORTED`); on another version the sidecar runs without it (slower start, mitmproxy's
own error pages) or, where security depends on it (the upstream hostname check), refuses.
`PATCHED` records a digest of the source of every internal function a patch replaces or relies
on; `tests/dataplane/test_patches.py` fails when an upgrade changes one, so the patch is
re-read before it ships.

- `skip_default_addons`: register `mitmproxy.addons` without running its `__init__`, which
  imports all ~40 default addons (flask, jinja2, ldap3...): ~20 MB less idle RSS per sidecar.
- `install_error_pages`: mitmproxy's HTTP/1 error page (HTML naming mitmproxy and internal
  addresses) replaced by the sidecar's flagged JSON answer (`proxy_addon.errorpage`).
- `verify_upstream_host`: pyOpenSSL has no hostname check; set OpenSSL's own on the connection
  through `SSL._lib`, exactly as mitmproxy's `tlsconfig` does.
- Cleartext HTTP/2 (`proxy_addon.h2c`): a NextLayer subclass and the `alpn` switches; its
  own version guard and source fingerprints (`tests/grpc_mesh/test_h2c_internals.py`).
- `share_listen_ports`: TCP listeners bind with `SO_REUSEPORT`, so the processes of a gateway
  with several workers accept on one port (the kernel spreads the connections among them).
- `trust_own_ca_key`: the sidecar's mitmproxy CA key (written by mitmproxy into the sidecar's own
  confdir) is loaded without cryptography's RSA consistency check, 0.3 s of CPU per start.
- Listener connection limits (`proxy_addon.connections`): each connection's watchdog timeout and
  callback set per listener, its handler's `server_event` wrapped to see a request's first byte.
- `LeanAddonManager` (`proxy_addon.dispatch`) overrides `AddonManager.trigger_event` and
  `handle_lifecycle`; its digests are recorded here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED = {"mitmproxy": "12.", "pyOpenSSL": "26."}

# "module:qualname" -> sha256 prefix of `inspect.getsource` of the internal a patch depends on.
PATCHED = {
    "mitmproxy.proxy.layers.http._http1:make_error_response": "03ce75ab62e8e78b",
    "mitmproxy.addonmanager:AddonManager.trigger_event": "b763c59bc4992e33",
    "mitmproxy.addonmanager:AddonManager.handle_lifecycle": "38c97e792d1db5b7",
    "mitmproxy.addonmanager:AddonManager.add": "6c26295c4f0f4eb9",
    "mitmproxy.addonmanager:AddonManager.remove": "2e93aab2204a39f6",
    "mitmproxy.addonmanager:safecall": "f2052c18340e99b0",  # dispatch re-raises a handler's error inside it
    "mitmproxy.hooks:Hook.args": "5bab95f7aa358e18",  # dispatch.hook_args gives the same list
    "mitmproxy.addons:": "c6040737c83f0ab7",  # the package's __init__: what skip_default_addons skips
    "mitmproxy.addons.tlsconfig:TlsConfig.tls_start_server": "2e2dc9c25670cf64",  # our set1_host twin
    # share_listen_ports: its TCP branch is one asyncio.start_server(handle_stream, host, port)
    "mitmproxy.proxy.mode_servers:AsyncioServerInstance.listen": "7670a9038b44170d",
    "mitmproxy.certs:load_pem_private_key": "385b32c24d70a4a2",
    # proxy_addon.connections: per-connection watchdog timeout and callback, the header timer's
    # view of client bytes (server_event per handler), closing a connection by its handler task
    "mitmproxy.proxy.server:TimeoutWatchdog.watch": "eee8e7085dba9250",
    "mitmproxy.proxy.server:ConnectionHandler.handle_client": "01f1b7cc991c4711",
    "mitmproxy.proxy.server:ConnectionHandler.handle_connection": "95c3f93e9824e527",
    "mitmproxy.proxy.server:ConnectionHandler.on_timeout": "0d1e6b0aa6e41173",
}


def versions() -> dict[str, str]:
    import mitmproxy.version
    import OpenSSL

    return {"mitmproxy": mitmproxy.version.VERSION, "pyOpenSSL": OpenSSL.__version__}


def supported() -> bool:
    found = versions()
    return all(found[name].startswith(prefix) for name, prefix in SUPPORTED.items())


def _target(key: str) -> Any:
    module_name, _, qualname = key.partition(":")
    if not qualname:  # a package's own __init__, read without importing it
        spec = importlib.util.find_spec(module_name)
        assert spec is not None and spec.origin is not None
        return spec.origin
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def source_digest(key: str) -> str:
    target = _target(key)
    if isinstance(target, str):
        with open(target, encoding="utf-8") as f:
            text = f.read()
    else:
        text = inspect.getsource(target)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def drifted() -> list[str]:
    """The patched internals whose source is not the one the patches were written against."""
    return [key for key, digest in PATCHED.items() if source_digest(key) != digest]


def _guarded(what: str) -> bool:
    if supported():
        return True
    logger.warning("mitmproxy %s / pyOpenSSL %s not known to this sidecar: %s left out",
                   versions()["mitmproxy"], versions()["pyOpenSSL"], what)
    return False


def skip_default_addons() -> None:
    """Call before anything imports `mitmproxy.addons`."""
    if "mitmproxy.addons" in sys.modules or not _guarded("lean addon loading"):
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


def trust_own_ca_key() -> None:
    """Load the confdir's CA key without the RSA key check (cryptography's
    `unsafe_skip_rsa_key_validation`: for keys from a trusted source; this one is the key
    mitmproxy generated in the sidecar's own confdir). The check is most of a sidecar's
    remaining start time once it is forked warm."""
    if not _guarded("fast CA key loading"):
        return
    from cryptography.hazmat.primitives import serialization
    from mitmproxy import certs

    def load(data: bytes, password: bytes | None) -> Any:
        try:
            return serialization.load_pem_private_key(
                data, password, unsafe_skip_rsa_key_validation=True
            )
        except TypeError:  # not encrypted after all: as mitmproxy's own loader does
            if password is not None:
                return load(data, None)
            raise

    certs.load_pem_private_key = load  # type: ignore[assignment]


def install_error_pages(make_response: Callable[[int, str], bytes]) -> None:
    """mitmproxy's HTTP/1 layer builds its error answers with `make_response` instead."""
    if not _guarded("the sidecar's error pages"):
        return
    from mitmproxy.proxy.layers.http import _http1

    _http1.make_error_response = make_response  # type: ignore[assignment]


def share_listen_ports() -> None:
    """mitmproxy's TCP listeners (regular, reverse) bind with SO_REUSEPORT from now on.

    Only for a gateway's workers: with it, another process of the same user could bind the
    port too and take a share of its connections, so a lone sidecar keeps the exclusive bind
    (a second one fails with "address in use", as it should). UDP and port 0 stay mitmproxy's.
    """
    if not _guarded("shared listen ports"):
        return  # the second worker then fails to bind: a clear error, not a silent steal
    import asyncio

    from mitmproxy.proxy import mode_servers

    cls = mode_servers.AsyncioServerInstance
    original = cls.listen
    if getattr(original, "shares_port", False):
        return

    async def listen(self: Any, host: str, port: int) -> list[Any]:
        if self.mode.transport_protocol != "tcp" or port == 0:
            return await original(self, host, port)  # type: ignore[no-any-return]
        return [await asyncio.start_server(self.handle_stream, host, port, reuse_port=True)]

    listen.shares_port = True  # type: ignore[attr-defined]
    cls.listen = listen  # type: ignore[method-assign]


def assemble_response(response: Any) -> bytes:
    """An HTTP/1 response as bytes, with mitmproxy's own assembler."""
    from mitmproxy.proxy.layers.http import _http1

    return _http1.http1.assemble_response(response)  # type: ignore[attr-defined,no-any-return]


class UnsupportedOpenSSL(RuntimeError):
    """pyOpenSSL lacks what the upstream hostname check needs: refuse rather than not verify."""


def verify_upstream_host(conn: Any, hostname: bytes) -> None:
    """Make OpenSSL verify the server's certificate names `hostname` (a pyOpenSSL Connection)."""
    from OpenSSL import SSL

    lib = getattr(SSL, "_lib", None)
    ssl_ptr = getattr(conn, "_ssl", None)
    if lib is None or ssl_ptr is None or not hasattr(lib, "X509_VERIFY_PARAM_set1_host"):
        raise UnsupportedOpenSSL(f"pyOpenSSL {versions()['pyOpenSSL']}: no way to check upstream host names")
    param = lib.SSL_get0_param(ssl_ptr)
    ok = lib.X509_VERIFY_PARAM_set1_host(param, hostname, len(hostname))
    SSL._openssl_assert(ok == 1)  # type: ignore[attr-defined]

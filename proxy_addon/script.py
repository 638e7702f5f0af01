"""The sidecar's request path as a plain mitmproxy addon, configured through mitmproxy options.

    mitmdump -s proxy_addon/script.py --mode regular@15001 --mode reverse:http://APP@15006 \
        --set keep_host_header=true --set meshctl_config=FILE --set meshctl_bindings=FILE

runs one sidecar's policy under stock mitmdump (for debugging: mitmproxy's own flow display,
`--set termlog_verbosity=debug`, other scripts beside it). `load()` declares the two options;
`configure()` reads and checks the pair whenever either changes: a file that does not parse, a
wrong schema version or a pair that does not fit raises `OptionsError` (at startup mitmdump
stops with the message; later the last good config stays). mitmdump's own listeners are used: a
`regular` one is the outbound side, a `reverse` one the inbound side (every listener of a gateway
config is the gateway). Not here: mesh mTLS, the admin endpoint, health checks, the file watcher
and the lean dispatch of `meshctl sidecar` (`proxy_addon.server`), which stays the way to run a
mesh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode

from meshctl.contract import ContractError
from proxy_addon.addon import MeshAddon
from proxy_addon.reload import load_pair
from proxy_addon.runtime import SidecarRuntime

OPTIONS = ("meshctl_config", "meshctl_bindings")
_ROLE_OF_MODE = {"regular": "outbound", "reverse": "inbound"}


class MeshScript:
    def __init__(self) -> None:
        self.rt: SidecarRuntime | None = None
        self.roles: dict[str, str] = {}
        self.addon: MeshAddon | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("meshctl_config", str, "", "Compiled sidecar config (JSON) of this sidecar.")
        loader.add_option("meshctl_bindings", str, "", "Runtime bindings (JSON): listeners, endpoints, certificates.")

    def configure(self, updated: set[str]) -> None:
        if updated.intersection(OPTIONS):
            self._load()
        if self.rt is not None and updated.intersection((*OPTIONS, "mode")):
            self._assign_roles()

    def _load(self) -> None:
        config_path, bindings_path = ctx.options.meshctl_config, ctx.options.meshctl_bindings
        if not config_path or not bindings_path:
            raise exceptions.OptionsError("set both meshctl_config and meshctl_bindings (compiled files)")
        try:
            config, bindings = load_pair(Path(config_path), Path(bindings_path))
        except ContractError as exc:
            raise exceptions.OptionsError(f"meshctl: {exc}") from None
        if self.rt is None:
            self.rt = SidecarRuntime(config, bindings)
            self.addon = MeshAddon(self.rt, self.roles)
        else:
            self.rt.install(config, bindings)

    def _assign_roles(self) -> None:
        assert self.rt is not None
        gateway = self.rt.snapshot.config.kind == "gateway"
        roles = {}
        for spec in ctx.options.mode:
            mode = ProxyMode.parse(spec)
            role = "gateway" if gateway else _ROLE_OF_MODE.get(mode.type_name)
            if role is not None:
                roles[mode.full_spec] = role
        self.roles.clear()
        self.roles.update(roles)

    # --- the hooks, handed to the sidecar's addon -------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            self.addon.requestheaders(flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            await self.addon.request(flow)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            self.addon.responseheaders(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            self.addon.response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            self.addon.error(flow)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if self.addon is not None:
            self.addon.http_connect(flow)

    async def done(self) -> None:
        if self.rt is not None:
            await self.rt.close()


addons = [MeshScript()]

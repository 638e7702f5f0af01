"""The sidecar's request path as a plain mitmproxy addon, configured through mitmproxy options.

    mitmdump -s proxy_addon/script.py --mode regular@15001 --mode reverse:http://APP@15006 \
        --set keep_host_header=true --set meshctl_config=FILE --set meshctl_bindings=FILE

runs one sidecar's policy under stock mitmdump (for debugging: mitmproxy's own flow display,
`--set termlog_verbosity=debug`, other scripts beside it). The config arrives as `meshctl
sidecar` gets it, through `proxy_addon.reload.ConfigSource`: `load()` declares the two options,
`configure()` reads and checks the pair whenever either changes (a file that does not parse, a
wrong schema version or a pair that does not fit raises `OptionsError`: at startup mitmdump
stops with the message; later the last good config stays), and a changed file is reloaded
while running. mitmdump's own listeners are used: a `regular` one is the outbound side, a
`reverse` one the inbound side (every listener of a gateway config is the gateway). Not here:
mesh mTLS, the admin endpoint, health checks, listener connection limits and the lean
dispatch of `meshctl sidecar` (`proxy_addon.server`), which stays the way to run a mesh.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import ctx, http
from mitmproxy.proxy.mode_specs import ProxyMode

from meshctl.contract import RuntimeBindings, SidecarConfig
from proxy_addon.addon import MeshAddon
from proxy_addon.reload import OPTIONS, ConfigSource
from proxy_addon.runtime import SidecarRuntime

_ROLE_OF_MODE = {"regular": "outbound", "reverse": "inbound"}


class MeshScript:
    def __init__(self) -> None:
        self.rt: SidecarRuntime | None = None
        self.roles: dict[str, str] = {}
        self.addon: MeshAddon | None = None
        self.source = ConfigSource(self._install)

    def load(self, loader: Any) -> None:
        self.source.load(loader)

    def configure(self, updated: set[str]) -> None:
        self.source.configure(updated)
        if self.rt is not None and updated.intersection((*OPTIONS, "mode")):
            self._assign_roles()

    def running(self) -> None:
        self.source.running()  # reload on a changed file

    def _install(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
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
        self.source.done()
        if self.rt is not None:
            await self.rt.close()


addons = [MeshScript()]

"""One sidecar process: an embedded mitmproxy Master with only the addons a proxy needs.

mitmdump's ~36 default addons halve throughput (every hook visits every addon); this Master
loads core, proxyserver, next_layer, tlsconfig and errorcheck, plus ours. Every hook event
visits every addon, so fewer addons is a faster proxy: dns_resolver (DNS mode only) is left
out, and errorcheck (startup errors only) is removed once the listeners are up.
Lifecycle: read the config through mitmproxy options (`proxy_addon.reload.ConfigSource`,
which also reloads it), start listeners and the admin server, and on SIGTERM drain:
readiness 503, listeners closed, requests in flight finish, exit 0.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from mitmproxy import exceptions, options
from mitmproxy.addons import core, errorcheck, proxyserver, tlsconfig
from mitmproxy.master import Master
from mitmproxy.proxy import mode_specs
from mitmproxy.proxy.context import Context

from meshctl.contract import ConnectionLimits, RuntimeBindings, SidecarConfig
from meshctl.decision.hosts import listener_ports
from proxy_addon import patches
from proxy_addon.addon import MeshAddon
from proxy_addon.admin import Admin
from proxy_addon.connections import ConnectionGuard, listener_limits, watchdog_seconds
from proxy_addon.dispatch import LeanAddonManager
from proxy_addon.gateway_tls import GatewayTls
from proxy_addon.h2c import MeshNextLayer, install_stream_recovery
from proxy_addon.health import HealthChecker
from proxy_addon.mtls import MeshTls
from proxy_addon.reload import ConfigSource
from proxy_addon.runtime import SidecarRuntime
from proxy_addon.state import endpoint_report
from proxy_addon.tcp import TcpTunnels
from proxy_addon.tcpmetrics import TcpMetrics

logger = logging.getLogger("meshctl.sidecar")

DRAIN_TIMEOUT_S = 25.0
UNROUTABLE = "127.0.0.1:9"  # reverse target of the gateway listener; every flow is re-routed


def listener_roles(config: SidecarConfig, bindings: RuntimeBindings) -> dict[str, str]:
    """mitmproxy mode specs (normalised) -> the role of the flows they accept.

    A gateway listens on each port of its listeners (`hosts.listener_ports`: the runtime may move
    them through `bindings.listeners.gateway`, and the first port through
    `bindings.listeners.outbound`, as for the single-port form).
    """
    host = bindings.listeners.host
    specs: dict[str, str] = {}
    if config.kind == "gateway":
        assert config.gateway is not None
        for port in listener_ports(config.gateway, bindings):
            specs[f"reverse:http://{UNROUTABLE}@{host}:{port}"] = "gateway"
    else:
        if bindings.listeners.outbound is not None:
            specs[f"regular@{host}:{bindings.listeners.outbound}"] = "outbound"
        if bindings.listeners.inbound is not None:
            app = bindings.app or UNROUTABLE
            tcp = config.inbound is not None and config.inbound.protocol == "tcp"
            scheme = "tcp" if tcp else "http"  # tcp: a byte relay, no L7 policy
            specs[f"reverse:{scheme}://{app}@{host}:{bindings.listeners.inbound}"] = "inbound"
    return {mode_specs.ProxyMode.parse(s).full_spec: role for s, role in specs.items()}


def quiet_logging() -> None:
    """mitmproxy routes every record through its handlers: keep chatty libraries out."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    for name in ("aiohttp", "asyncio", "mitmproxy", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)


def release_startup_memory() -> None:
    """Hand the heap freed after imports and startup back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    gc.freeze()  # startup objects live forever: keep them out of later collections
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class Sidecar:
    """One sidecar; its config arrives through the `meshctl_config`/`meshctl_bindings` options.

    The first pair `ConfigSource` installs builds the runtime and the addons; later pairs (a
    changed file) are hot reloads, through the same read.
    """

    # built by the first pair (`_first`)
    rt: SidecarRuntime
    addon: MeshAddon
    tcp: TcpTunnels
    admin: Admin
    health: HealthChecker

    def __init__(self, config_path: Path, bindings_path: Path, confdir: Path | None = None) -> None:
        self.config_path, self.bindings_path = config_path, bindings_path
        self.source = ConfigSource(self._install, self._refused)
        self.roles: dict[str, str] = {}
        # per listener, set on each client connection by ConnectionGuard (proxy_addon/connections)
        self.limits: dict[str, tuple[str, ConnectionLimits]] = {}
        self.ready = False
        self._own_confdir = confdir is None
        self.confdir = confdir or Path(tempfile.mkdtemp(prefix="meshctl-sidecar-"))
        self.master: Master | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self.exit_code = 0
        self._built = False

    def _first(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        self.rt = SidecarRuntime(config, bindings)
        self.roles.update(listener_roles(config, bindings))
        self.limits.update(listener_limits(config, bindings, self.roles))
        self.addon = MeshAddon(self.rt, self.roles, self.started)
        self.tcp = TcpTunnels(self.rt.state)
        self.addon.tcp = self.tcp
        self.admin = Admin(self.rt.metrics, self._current, lambda: self.ready, self.rt.recent,
                           lambda: endpoint_report(self.rt.state, time.monotonic()))
        self.health = HealthChecker(self.rt)
        self._built = True

    def _h2c_listener(self, context: Context) -> bool:
        """Listeners where clients may speak cleartext HTTP/2: outbound, HTTP inbound, gateway
        (over TLS, ALPN decides)."""
        mode = context.client.proxy_mode
        role = self.roles.get(mode.full_spec)
        if role == "outbound":
            return True
        return role in ("inbound", "gateway") and isinstance(mode, mode_specs.ReverseMode) and mode.scheme == "http"

    def _current(self) -> tuple[SidecarConfig, RuntimeBindings]:
        snap = self.rt.snapshot
        return snap.config, snap.bindings

    def _install(self, config: SidecarConfig, bindings: RuntimeBindings) -> None:
        if not self._built:
            self._first(config, bindings)
            return
        old = self.rt.snapshot
        self.rt.install(config, bindings)
        self.rt.metrics.reloads.inc()
        roles = listener_roles(config, bindings)
        self.limits.clear()
        self.limits.update(listener_limits(config, bindings, roles))
        if self.master is not None:
            self.master.options.update(tcp_timeout=watchdog_seconds(self.limits))
        if roles != self.roles and self.master is not None and not self.addon.draining:
            self.roles.clear()
            self.roles.update(roles)
            self.master.options.update(mode=list(roles))
        if bindings.listeners.admin != old.bindings.listeners.admin:
            logger.warning("admin port changes take effect on restart")
        print(
            f"meshctl sidecar {config.name}: revision {config.revision} applied",
            file=sys.stderr,
            flush=True,
        )

    def _refused(self, message: str) -> None:
        self.rt.metrics.reload_failures.inc()

    async def run(self) -> int:
        quiet_logging()
        # a refused gRPC call may be sent again (proxy_addon/h2c.py); done already by `warm`
        install_stream_recovery()
        opts = options.Options(confdir=str(self.confdir), listen_host="127.0.0.1")
        master = Master(opts)
        master.addons = LeanAddonManager(master)  # before any addon is added
        self.master = master
        master.addons.add(self.source)
        try:
            opts.update(meshctl_config=str(self.config_path), meshctl_bindings=str(self.bindings_path))
        except exceptions.OptionsError as exc:
            print(f"meshctl sidecar: {str(exc).removeprefix('meshctl: ')}", file=sys.stderr)
            if self._own_confdir:
                shutil.rmtree(self.confdir, ignore_errors=True)
            return 2
        if self.rt.snapshot.bindings.listeners.shared:
            patches.share_listen_ports()  # one of a gateway's workers: one port for all
        proxy = proxyserver.Proxyserver()
        master.addons.add(
            core.Core(),
            proxy,
            # early: its requestheaders must stop the header timer before a request is answered
            ConnectionGuard(lambda: proxy.connections, self.limits, self.rt.metrics.registry),
            self.tcp,  # before NextLayer: it decides tunnels to tcp services
            MeshNextLayer(self._h2c_listener),  # mitmproxy's NextLayer, plus h2c
            # before TlsConfig: mesh mTLS sets the connection, TlsConfig then leaves it alone
            MeshTls(
                lambda: self.rt.tls, lambda: self.rt.snapshot, self.roles,
                self.rt.metrics.registry, self.rt.access_log.write,
            ),
            GatewayTls(self.rt.edge.ports),  # https gateway listeners, also before TlsConfig
            tlsconfig.TlsConfig(),
            errorcheck.ErrorCheck(repeat_errors_on_stderr=True),
            self.addon,
            TcpMetrics(self.rt, self.roles),
        )
        # lazy: a reverse listener answers 502 instead of closing when its target is down.
        opts.update(
            mode=list(self.roles), connection_strategy="lazy", keep_host_header=True,
            tcp_timeout=watchdog_seconds(self.limits),
        )
        logging.getLogger().setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.begin_drain)
        try:
            await master.run()
        except SystemExit:
            # mitmproxy's errorcheck exits when startup logged an error (a port in use):
            # an environment error, exit code 2 like a bad config file.
            self.exit_code = 2
        finally:
            self.source.stop()
            self.health.stop()
            await self.admin.stop()
            await self.rt.close()
            self.rt.access_log.close()
            if self._own_confdir:
                shutil.rmtree(self.confdir, ignore_errors=True)
        return self.exit_code

    async def started(self) -> None:
        listeners = self.rt.snapshot.bindings.listeners
        try:
            await self.admin.start(listeners.host, listeners.admin)
        except OSError as exc:
            print(f"meshctl sidecar: admin listener: {exc.strerror}", file=sys.stderr)
            self.exit_code = 2
            assert self.master is not None
            self.master.shutdown()
            return
        self.health.start()
        self.rt.spans.start()
        assert self.master is not None
        if (check := self.master.addons.get("errorcheck")) is not None:
            check.finish()  # (idempotent) stop collecting log records
            self.master.addons.remove(check)
        release_startup_memory()
        self.ready = True
        snap = self.rt.snapshot
        print(
            f"meshctl sidecar {snap.config.name} ({snap.config.kind}) serving revision "
            f"{snap.revision}: " + ", ".join(f"{r} {s}" for s, r in self.roles.items())
            + f", admin {listeners.host}:{listeners.admin}",
            file=sys.stderr,
            flush=True,
        )

    def begin_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        self.ready = False
        self.addon.draining = True
        assert self.master is not None
        self.master.options.update(server=False)  # close the listeners; connections stay
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.addon.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.master.shutdown()


def serve(config_path: Path, bindings_path: Path, confdir: Path | None = None) -> int:
    """Run one sidecar; exit 2 when the pair cannot be used (the file named) or a port is taken."""
    sidecar = Sidecar(config_path, bindings_path, confdir)
    return asyncio.run(sidecar.run())

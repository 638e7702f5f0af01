"""The sidecar's config as mitmproxy options: `meshctl_config` and `meshctl_bindings`.

`ConfigSource` is the one way a sidecar gets its compiled config and runtime bindings, under
`meshctl sidecar` (`proxy_addon.server`) and plain `mitmdump -s` (`proxy_addon.script`) alike:
`load()` declares the two options, `configure()` reads and checks the pair whenever either
option changes, and while running it polls the files' (mtime, size, inode) every 200 ms and
reloads through the same read when either file changes (no measurable cost, no extra
dependency, well within the one second the SPEC allows). A pair that does not parse (half
written, truncated, wrong version) is refused: `OptionsError` from `configure()` (mitmproxy
rolls the option back), a logged refusal from the poll; either way the last good config stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions

from meshctl.contract import (
    ContractError,
    RuntimeBindings,
    SidecarConfig,
    parse_runtime_bindings,
    parse_sidecar_config,
)
from proxy_addon.tls import TlsError
from proxy_addon.tls import load as load_tls

logger = logging.getLogger(__name__)
POLL_S = 0.2
OPTIONS = ("meshctl_config", "meshctl_bindings")


def load_pair(config_path: Path, bindings_path: Path) -> tuple[SidecarConfig, RuntimeBindings]:
    """Read and check both files; ContractError names the file that is wrong."""
    try:
        config_text = config_path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{config_path}: cannot read: {exc.strerror}") from None
    try:
        bindings_text = bindings_path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{bindings_path}: cannot read: {exc.strerror}") from None
    try:
        config = parse_sidecar_config(config_text)
    except ContractError as exc:
        raise ContractError(f"{config_path}: {exc}") from None
    try:
        bindings = parse_runtime_bindings(bindings_text)
    except ContractError as exc:
        raise ContractError(f"{bindings_path}: {exc}") from None
    check_pair(config, bindings)
    return config, bindings


def check_pair(config: SidecarConfig, bindings: RuntimeBindings) -> None:
    if config.kind == "service":
        if bindings.listeners.inbound is not None and not bindings.app:
            raise ContractError("bindings: an inbound listener needs `app` (host:port)")
    elif config.gateway is None:
        raise ContractError("config: a gateway sidecar needs `gateway`")
    # mTLS fails closed: a sidecar never runs strict or permissive without its certificates.
    if config.mtls != "disabled":
        if bindings.tls is None:
            raise ContractError(f"bindings: mtls is {config.mtls} but `tls` names no certificates")
        try:
            load_tls(bindings.tls)
        except TlsError as exc:
            raise ContractError(f"bindings: {exc}") from None


Stamps = tuple[tuple[int, int, int] | None, ...]


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _stamps(paths: tuple[Path, Path]) -> Stamps:
    return tuple(_stamp(p) for p in paths)


class ConfigSource:
    """mitmproxy addon: the options naming the pair, loaded on configure, reloaded on change.

    `install(config, bindings)` receives every good pair, the first one included; `refused`
    hears of a pair the poll could not use.
    """

    def __init__(
        self,
        install: Callable[[SidecarConfig, RuntimeBindings], None],
        refused: Callable[[str], None] | None = None,
    ) -> None:
        self.install = install
        self.refused = refused
        self.paths: tuple[Path, Path] | None = None
        self._stamps: Stamps = ()
        self._task: asyncio.Task[None] | None = None

    def load(self, loader: Any) -> None:
        loader.add_option("meshctl_config", str, "", "Compiled sidecar config (JSON) of this sidecar.")
        loader.add_option(
            "meshctl_bindings", str, "", "Runtime bindings (JSON): listeners, endpoints, certificates."
        )

    def configure(self, updated: set[str]) -> None:
        if not updated.intersection(OPTIONS):
            return
        config_path, bindings_path = ctx.options.meshctl_config, ctx.options.meshctl_bindings
        if not config_path and not bindings_path:
            # neither set yet (or rolled back to unset): nothing to read, nothing to refuse
            logger.warning("meshctl: no config yet: set meshctl_config and meshctl_bindings")
            return
        if not config_path or not bindings_path:
            raise exceptions.OptionsError(
                "meshctl: set both meshctl_config and meshctl_bindings (compiled files)"
            )
        paths = (Path(config_path), Path(bindings_path))
        if paths == self.paths and _stamps(paths) == self._stamps:
            return  # nothing new: mitmproxy re-sends the old values when it rolls an update back
        try:
            self._read(paths)
        except ContractError as exc:
            raise exceptions.OptionsError(f"meshctl: {exc}") from None

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._poll(), name="meshctl config watcher"
            )

    def done(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            self.check()

    def check(self) -> None:
        """Reload when either file changed since the last read; a bad pair is refused once."""
        if self.paths is None:
            return
        stamps = _stamps(self.paths)
        if stamps == self._stamps:
            return
        try:
            self._read(self.paths)
        except ContractError as exc:
            self._stamps = stamps  # tried: the next write is tried again, not this one
            logger.error("config refused, keeping the last good one: %s", exc)
            if self.refused is not None:
                self.refused(str(exc))

    def _read(self, paths: tuple[Path, Path]) -> None:
        stamps = _stamps(paths)  # taken before reading: a write during the read is seen next poll
        config, bindings = load_pair(*paths)
        self.paths, self._stamps = paths, stamps
        self.install(config, bindings)

"""Real processes for tests: free ports, the test app, and sidecars started from contract objects.

    app = start_app("v1")                                # tests/support/app.py on a free port
    sc = start_sidecar(tmp_path, config, bindings)       # waits for /ready
    sc.reload(new_config)                                # atomic write, waits until /config has it
    sc.stop(); app.stop()                                # SIGTERM (exit code returned) / kill

Everything listens on 127.0.0.1 only. Stop what you start (module-scoped fixtures that yield
and stop keep a test file to a few process starts, which matters on a two-core machine).
Sidecars run as `python -OO -m proxy_addon` (what `meshctl sidecar` executes) unless
`via_cli=True`; their access log is `workdir/access.log`, their stderr `workdir/sidecar.err`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshctl.contract import (
    Listeners,
    RuntimeBindings,
    SidecarConfig,
    dump_json,
)
from meshctl.fsio import write_atomic  # re-exported for the tests

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def requests_served(metrics: str) -> float:
    """All of istio_requests_total in a sidecar's /metrics text: the requests it answered."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("istio_requests_total{"))


@dataclass
class App:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        return json.loads(http_get(f"http://{self.address}/__stats")[1])

    def configure(self, **settings: Any) -> None:
        req = urllib.request.Request(
            f"http://{self.address}/__config", data=json.dumps(settings).encode(), method="POST"
        )
        urllib.request.urlopen(req, timeout=5).read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_app(
    name: str, *, plain: bool = False, port: int | None = None, proxy: str | None = None,
    tls: tuple[Path, Path] | None = None,
) -> App:
    """Start the test app; `proxy` becomes its HTTP_PROXY (a sidecar's outbound listener)."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "no_proxy")}
    if proxy:
        env["HTTP_PROXY"] = proxy
    args = [PYTHON, "-m", "tests.support.app", "--port", str(port), "--name", name]
    if plain:
        args.append("--plain")
    if tls is not None:  # (certificate, key): serve HTTPS
        args += ["--cert", str(tls[0]), "--key", str(tls[1])]
    proc = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port, proc=proc)
    return App(name, port, proc)


@dataclass
class Sidecar:
    workdir: Path
    config: SidecarConfig
    bindings: RuntimeBindings
    proc: subprocess.Popen[bytes]
    log_path: Path
    err_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.json"

    @property
    def bindings_path(self) -> Path:
        return self.workdir / "bindings.json"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.bindings.listeners.admin}"

    @property
    def outbound_proxy(self) -> str:
        """The HTTP_PROXY value an app beside this sidecar would use."""
        return f"http://127.0.0.1:{self.bindings.listeners.outbound}"

    @property
    def inbound_address(self) -> str:
        return f"127.0.0.1:{self.bindings.listeners.inbound}"

    @property
    def gateway_url(self) -> str:
        assert self.config.gateway is not None
        port = self.bindings.listeners.outbound or self.config.gateway.port
        return f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"sidecar exited with {self.proc.returncode}: {self.stderr()[-2000:]}"
                )
            try:
                if http_get(self.admin_url + "/ready", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"sidecar not ready after {timeout}s: {self.stderr()[-2000:]}")

    def running_config(self) -> dict[str, Any]:
        return json.loads(http_get(self.admin_url + "/config")[1])

    def reload(
        self,
        config: SidecarConfig | None = None,
        bindings: RuntimeBindings | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Write new files atomically; wait until /config shows the new revision."""
        if bindings is not None:
            self.bindings = bindings
            write_atomic(self.bindings_path, dump_json(bindings))
        if config is not None:
            self.config = config
            write_atomic(self.config_path, dump_json(config))
        deadline = time.monotonic() + timeout
        wanted = self.config.model_dump(mode="json")
        while time.monotonic() < deadline:
            try:
                if self.running_config()["config"] == wanted:
                    return
            except OSError:
                pass  # admin slow to answer on a busy machine: ask again
            time.sleep(0.05)
        raise TimeoutError("sidecar did not apply the new config")

    def metrics(self) -> str:
        return http_get(self.admin_url + "/metrics")[1].decode()

    def access_log(self) -> list[dict[str, Any]]:
        """Entries so far. The sidecar batches lines for up to 50 ms: wait that out first."""
        time.sleep(0.12)
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def bindings_for(
    *,
    outbound: bool = True,
    inbound: bool = True,
    app: str | None = None,
    endpoints: dict[str, dict[str, tuple[str, ...]]] | None = None,
    version: str | None = "v1",
    instance: str = "test-0",
) -> RuntimeBindings:
    return RuntimeBindings(
        version=version,
        instance=instance,
        listeners=Listeners(
            outbound=free_port() if outbound else None,
            inbound=free_port() if inbound else None,
            admin=free_port(),
        ),
        app=app,
        endpoints=endpoints or {},
    )


def start_sidecar(
    workdir: Path,
    config: SidecarConfig,
    bindings: RuntimeBindings,
    *,
    via_cli: bool = False,
    wait: bool = True,
) -> Sidecar:
    """Start `python -O -m proxy_addon` (or `meshctl sidecar`) on files in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_atomic(workdir / "config.json", dump_json(config))
    write_atomic(workdir / "bindings.json", dump_json(bindings))
    files = ["--config", str(workdir / "config.json"), "--bindings", str(workdir / "bindings.json")]
    if via_cli:
        args = [PYTHON, "-m", "meshctl", "sidecar", *files]
    else:
        args = [PYTHON, "-OO", "-m", "proxy_addon", *files]
    log_path, err_path = workdir / "access.log", workdir / "sidecar.err"
    with open(log_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=err)
    sidecar = Sidecar(workdir, config, bindings, proc, log_path, err_path)
    if wait:
        sidecar.wait_ready()
    return sidecar

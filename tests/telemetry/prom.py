"""A real Prometheus server for tests, and the upstream queries rendered as their tools do.

The PromQL comes verbatim from the tools' sources (tests/telemetry/upstream_queries.json,
copied from the commits named there); rendering substitutes only what the tool itself
substitutes: Flagger's template variables, Kiali's fmt.Sprintf arguments, Grafana's
dashboard variables.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

UPSTREAM = json.loads((Path(__file__).parent / "upstream_queries.json").read_text())
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, config: Path, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "prometheus.log"
        self._out = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=self._out, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", state="active")["activeTargets"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


# --- rendering, as each tool does -----------------------------------------------------------


def flagger(name: str, *, namespace: str, target: str, interval: str) -> str:
    """Flagger's RenderQuery: a Go text/template over the canary's namespace, target, interval."""
    text = UPSTREAM["flagger"]["queries"][name]
    values = {"namespace": namespace, "target": target, "interval": interval}
    rendered = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: values[m.group(1)], text)
    assert "{{" not in rendered
    return rendered


def go_sprintf(fmt: str, *args: object) -> str:
    """fmt.Sprintf for the verbs Kiali's queries use: %s, %v, %.2f, %%."""
    it = iter(args)

    def verb(m: re.Match[str]) -> str:
        spec = m.group(0)
        if spec == "%%":
            return "%"
        value = next(it)
        return f"{value:.2f}" if spec == "%.2f" else str(value)

    out = re.sub(r"%%|%\.2f|%s|%v", verb, fmt)
    assert next(it, None) is None, "unused arguments"
    return out


def kiali_traffic(side: str, *, namespace: str, seconds: int) -> str:
    """buildNamespaceTrafficMap queries 2 (destination) and 3 (source), HTTP request rates."""
    t = UPSTREAM["kiali"]["traffic"]
    reporter = f'reporter="{side}"'  # util.GetReporter without ambient
    return go_sprintf(t[side], "istio_requests_total", reporter, namespace, seconds, t["group_by"], "> 0")


def kiali_response_time(side: str, *, namespace: str, seconds: int, quantile: float = 0.95) -> str:
    """ResponseTimeAppender for a quantile (Kiali's default is 0.95)."""
    t = UPSTREAM["kiali"]["response_time"]
    reporter = f'reporter="{side}"'
    return go_sprintf(t[side], quantile, "istio_request_duration_milliseconds_bucket", reporter,
                      namespace, seconds, t["group_by"])


def grafana(dashboard: str, panel: str, ref: str, variables: dict[str, str]) -> str:
    """A panel target's expr with Grafana's variables replaced ($var and ${var})."""
    expr = UPSTREAM["istio"]["dashboards"][dashboard]["panels"][panel][ref]

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return variables[name]

    rendered = re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)
    assert "$" not in rendered, rendered
    return str(rendered)


def all_of(*values: str) -> str:
    """Grafana's "All" for a multi-value variable without allValue: (a|b|c)."""
    return "(" + "|".join(values) + ")"  # (names here have no regex specials but dots)

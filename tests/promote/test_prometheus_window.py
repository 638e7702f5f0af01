"""An unreachable Prometheus is a usage error naming its URL, not a traceback."""

from __future__ import annotations

import socket

import pytest

from meshctl.errors import UsageError
from meshctl.promote.observe import PrometheusWindow


def test_unreachable_prometheus_is_a_usage_error() -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    window = PrometheusWindow(f"http://127.0.0.1:{port}", "reviews", ["v1", "v2"])
    window.open()
    with pytest.raises(UsageError, match=f"cannot query Prometheus at http://127.0.0.1:{port}"):
        window.close()

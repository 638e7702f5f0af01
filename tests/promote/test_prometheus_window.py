"""An unreachable Prometheus is a usage error naming its URL, not a traceback."""

from __future__ import annotations

import pytest

from meshctl.errors import UsageError
from meshctl.promote.observe import PrometheusWindow
from tests.support.procs import free_port


def test_unreachable_prometheus_is_a_usage_error() -> None:
    port = free_port()  # nobody listens on it
    window = PrometheusWindow(f"http://127.0.0.1:{port}", "reviews", ["v1", "v2"])
    window.open()
    with pytest.raises(UsageError, match=f"cannot query Prometheus at http://127.0.0.1:{port}"):
        window.close()

"""The access log file: Envoy's text and JSON forms, size rotation with a kept count."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_addon.accesslog import AccessLog, rfc3339, text_line

ENTRY = {
    "start_time": rfc3339(1764630000.123), "method": "GET", "path": "/reviews/1",
    "protocol": "HTTP/1.1", "response_code": 200, "response_flags": "-", "bytes_received": 0,
    "bytes_sent": 42, "duration": 3, "upstream_host": "127.0.0.1:9082",
    "upstream_cluster": "outbound|80|v1|reviews.default.svc.cluster.local",
    "x_forwarded_for": None, "user_agent": "curl/8", "request_id": "2d3c...", "authority": "reviews",
    "route_name": "default", "downstream_peer_uri_san": None, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
}


def test_text_line_is_envoys_default_format_then_meshctls_fields() -> None:
    line = text_line(ENTRY)
    assert line == (
        '[2025-12-01T23:00:00.123Z] "GET /reviews/1 HTTP/1.1" 200 - 0 42 3 "-" "curl/8" "2d3c..." '
        '"reviews" "127.0.0.1:9082" outbound|80|v1|reviews.default.svc.cluster.local default - '
        "4bf92f3577b34da6a3ce929d0e0e4736\n")


def test_file_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    log = AccessLog()
    path = tmp_path / "logs" / "reviews-v1-0.access.log"
    log.configure("json", str(path), max_bytes=4096, keep=2)
    for i in range(200):
        log.write(ENTRY | {"path": f"/r/{i}"})
        log.flush()
    log.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["reviews-v1-0.access.log", "reviews-v1-0.access.log.1", "reviews-v1-0.access.log.2"]
    for name in files:
        text = (path.parent / name).read_text()
        assert len(text) <= 4096 + 1024  # rotated once past the limit
        assert all(json.loads(line)["method"] == "GET" for line in text.splitlines())
    newest = [json.loads(line)["path"] for line in path.read_text().splitlines()]
    assert newest[-1] == "/r/199"


def test_off_writes_nothing(tmp_path: Path) -> None:
    log = AccessLog()
    path = tmp_path / "a.log"
    log.configure("off", str(path), max_bytes=4096, keep=1)
    log.write(ENTRY)
    log.close()
    assert path.read_text() == ""


@settings(max_examples=3000, deadline=None)
@given(st.one_of(
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
    # just below a millisecond or a second: where rounding carries
    st.builds(lambda s, us: s + us / 1e6 + 0.4999e-6, st.integers(0, 4 * 10**9), st.integers(0, 999_999)),
    st.builds(lambda s, us: s + (us + 0.5) / 1e6, st.integers(0, 4 * 10**9), st.integers(0, 999_999)),
))
def test_start_time_is_what_datetime_formats(ts: float) -> None:
    """The per-second cache gives the text datetime gives for every timestamp."""
    expected = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert rfc3339(ts) == expected
    assert rfc3339(ts) == expected  # from the cache this time


def test_json_lines_are_compact_and_parse(tmp_path: Path) -> None:
    log = AccessLog()
    log.configure("json", str(tmp_path / "a.log"), 1 << 20, 1)
    log.write(ENTRY)
    log.close()
    line = (tmp_path / "a.log").read_text()
    assert line == json.dumps(ENTRY, separators=(",", ":")) + "\n"

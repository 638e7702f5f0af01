"""Malformed HTTP a client may send to any listener; each must get an answer or a close, fast.

`{host}` becomes the listener's logical target: an absolute URL for the outbound (explicit
proxy) listener, a path elsewhere.
"""

from __future__ import annotations

POST = b"POST {target} HTTP/1.1\r\nHost: orders\r\n"

CASES: dict[str, bytes] = {
    "nul-in-header-value": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: a\x00b\r\n\r\n",
    "nul-in-method": b"G\x00T {target} HTTP/1.1\r\nHost: orders\r\n\r\n",
    # found by bench/reliability/http_fuzz.py: a control byte in the target reached the upstream
    # client, which refused it with a traceback
    "control-byte-in-target": b"GET {target}\x1a\x19 HTTP/1.1\r\nHost: orders\r\n\r\n",
    "esc-in-header-value": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: a\x1b[2Jb\r\n\r\n",
    "del-in-header-value": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: a\x7fb\r\n\r\n",
    "bare-cr-in-header": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: a\rb\r\n\r\n",
    "bare-lf-line-ends": b"GET {target} HTTP/1.1\nHost: orders\nX-A: b\n\n",
    "space-before-colon": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A : b\r\n\r\n",
    "nul-in-header-name": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX\x00A: b\r\n\r\n",
    "no-colon": b"GET {target} HTTP/1.1\r\nHost: orders\r\nnocolon\r\n\r\n",
    "obs-fold": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: a\r\n b\r\n\r\n",
    "garbage-request-line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "binary-noise": bytes(range(256)) + b"\r\n\r\n",
    "unknown-version": b"GET {target} HTTP/9.9\r\nHost: orders\r\n\r\n",
    "http-0.9": b"GET {target}\r\n\r\n",
    "lowercase-method": b"get {target} HTTP/1.1\r\nHost: orders\r\n\r\n",
    "huge-method": b"A" * 70_000 + b" {target} HTTP/1.1\r\nHost: orders\r\n\r\n",
    "huge-header": b"GET {target} HTTP/1.1\r\nHost: orders\r\nX-A: " + b"a" * 200_000 + b"\r\n\r\n",
    "many-headers": b"GET {target} HTTP/1.1\r\nHost: orders\r\n" + b"X-A: b\r\n" * 5_000 + b"\r\n",
    "two-content-lengths": POST + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "negative-content-length": POST + b"Content-Length: -1\r\n\r\n",
    "huge-content-length": POST + b"Content-Length: 99999999999999999999\r\n\r\n",
    "te-and-cl": POST + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "bad-chunk-size": POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "unknown-transfer-encoding": POST + b"Transfer-Encoding: gzip\r\n\r\n",
    "host-with-nul": b"GET {target} HTTP/1.1\r\nHost: ord\x00ers\r\n\r\n",
    "absolute-url-bad-ipv6": b"GET http://[::1/ HTTP/1.1\r\nHost: orders\r\n\r\n",
    "bad-percent-path": b"GET /%zz%00%ff HTTP/1.1\r\nHost: orders\r\n\r\n",
    "regex-dos-path": b"GET /" + b"a" * 40 + b"! HTTP/1.1\r\nHost: orders\r\n\r\n",
    "only-crlf": b"\r\n\r\n\r\n\r\n",
    "half-request": b"GET {target} HTTP/1.1\r\nHost: ord",
}

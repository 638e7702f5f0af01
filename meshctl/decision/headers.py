"""Header operations of a rule, with mitmproxy's header semantics, for the sidecar and `explain`.

`apply_header_ops` works on anything shaped like a case-insensitive multi-dict: mitmproxy's
`http.Headers` (the request a gateway matches on, every response) and multidict's `CIMultiDict`
(the headers the pooled client forwards). On both, `del h[name]` removes every value, `h[name] =
v` leaves one value, `h.add(name, v)` appends one. `joined` reads headers back as routing sees
them: lower-case names, repeated values joined with ", ".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from mitmproxy.http import Headers

from meshctl.contract import CompiledHeaderOps


class MultiHeaders(Protocol):
    def __contains__(self, name: object, /) -> bool: ...
    def __delitem__(self, name: str, /) -> None: ...
    def __setitem__(self, name: str, value: str, /) -> None: ...
    def add(self, name: str, value: str, /) -> None: ...


def apply_header_ops(headers: MultiHeaders, ops: CompiledHeaderOps) -> None:
    """Remove, then set, then add (the order Envoy and Istio apply them in)."""
    for name in ops.remove:
        if name in headers:
            del headers[name]
    for name, value in ops.set.items():
        headers[name] = value
    for name, value in ops.add.items():
        headers.add(name, value)


def joined(fields: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names, repeated values joined with ", " in order: one pass over raw fields."""
    out: dict[str, str] = {}
    for raw_name, raw_value in fields:
        key = raw_name.decode("latin-1").lower()
        text = raw_value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def with_ops(headers: Mapping[str, str], ops: CompiledHeaderOps) -> dict[str, str]:
    """`headers` (as `joined` gives them) after `ops`, applied to a mitmproxy `Headers`."""
    if not (ops.remove or ops.set or ops.add):
        return dict(headers)
    message = Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])
    apply_header_ops(message, ops)
    return joined(message.fields)

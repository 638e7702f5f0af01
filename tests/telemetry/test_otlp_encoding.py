"""The sidecar's OTLP encoder writes what opentelemetry-proto reads, field for field."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from proxy_addon.tracing import encode, new_request_id, next_traceparent, parse_traceparent


def test_encoded_batch_decodes_with_opentelemetry_proto() -> None:
    attrs = [("http.request.method", "GET"), ("http.response.status_code", 503), ("ratio", 0.5),
             ("sampled", True), ("negative", -3)]
    spans = [
        ("server", "GET default", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "", 10, 20, False, attrs),
        ("client", "GET", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b8", "00f067aa0ba902b7",
         2**62, 2**63 + 5, True, attrs[:1]),
    ]
    message = ExportTraceServiceRequest.FromString(
        encode(spans, (("service.name", "reviews"), ("service.version", "v2"))))
    (rs,) = message.resource_spans
    assert {a.key: a.value.string_value for a in rs.resource.attributes} == {
        "service.name": "reviews", "service.version": "v2"}
    (ss,) = rs.scope_spans
    assert ss.scope.name == "meshctl-sidecar"
    first, second = ss.spans
    assert first.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736" and first.span_id.hex() == "00f067aa0ba902b7"
    assert first.parent_span_id == b"" and first.name == "GET default" and first.kind == Span.SPAN_KIND_SERVER
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10, 20)
    values = {a.key: a.value for a in first.attributes}
    assert values["http.request.method"].string_value == "GET"
    assert values["http.response.status_code"].int_value == 503
    assert values["ratio"].double_value == 0.5 and values["sampled"].bool_value is True
    assert values["negative"].int_value == -3
    assert first.status.code == Status.STATUS_CODE_UNSET
    assert second.kind == Span.SPAN_KIND_CLIENT and second.parent_span_id.hex() == "00f067aa0ba902b7"
    assert second.end_time_unix_nano == 2**63 + 5 and second.status.code == Status.STATUS_CODE_ERROR


def test_trace_context_and_request_ids() -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    out = parse_traceparent(next_traceparent(incoming, 0.0))
    assert out is not None and out.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736" and out.sampled
    assert out.span_id != "00f067aa0ba902b7"
    assert parse_traceparent("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None  # invalid trace id
    fresh = parse_traceparent(next_traceparent(None, 0.0))
    assert fresh is not None and not fresh.sampled
    rid = new_request_id()
    assert len(rid) == 36 and rid[14] == "4" and rid[19] in "89ab"


def _reference_parse(value: str | None) -> tuple[str, str, bool] | None:
    """The W3C rules written out part by part (as the parser first was): the regex must agree."""
    hexdigits = frozenset("0123456789abcdef")
    if not value:
        return None
    parts = value.strip().lower().split("-")

    def is_hex(part: str, length: int) -> bool:
        return len(part) == length and set(part) <= hexdigits and part != "0" * length

    if (len(parts) >= 4 and len(parts[0]) == 2 and set(parts[0]) <= hexdigits and parts[0] != "ff"
            and is_hex(parts[1], 32) and is_hex(parts[2], 16) and len(parts[3]) == 2
            and set(parts[3]) <= hexdigits):
        return parts[1], parts[2], bool(int(parts[3], 16) & 1)
    return None


_PIECE = st.text(alphabet="0123456789abcdefABCDEFxg-\n ", max_size=34)


@settings(max_examples=4000, deadline=None)
@given(st.one_of(
    st.none(), st.text(max_size=60), _PIECE,
    st.builds(lambda *p: "-".join(p), _PIECE, _PIECE, _PIECE, _PIECE),
    st.builds(lambda v, t, s, f, rest: f"{v}-{t}-{s}-{f}{rest}",
              st.sampled_from(["00", "01", "ff", "FF", "0", "zz", "cc"]),
              st.sampled_from(["4bf92f3577b34da6a3ce929d0e0e4736", "0" * 32,
                               "4BF92F3577B34DA6A3CE929D0E0E4736", "4bf9"]),
              st.sampled_from(["00f067aa0ba902b7", "0" * 16, "00f067aa0ba902b"]),
              st.sampled_from(["00", "01", "03", "ff", "0", "0g", "1"]),
              st.sampled_from(["", "-", "-x", "-01-02", " ", "\n", "x"])),
))
def test_traceparent_parser_agrees_with_the_rules(value: str | None) -> None:
    ctx = parse_traceparent(value)
    assert (None if ctx is None else (ctx.trace_id, ctx.span_id, ctx.sampled)) == _reference_parse(value)

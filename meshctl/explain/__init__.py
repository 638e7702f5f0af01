"""`meshctl explain`: where a request goes and why, from compiled configs, by the sidecar's code."""

from meshctl.explain.decide import explain
from meshctl.explain.result import ExplainError, Explanation, Request, backend_name, parse_header
from meshctl.explain.text import text_report

__all__ = ["ExplainError", "Explanation", "Request", "backend_name", "explain", "parse_header", "text_report"]

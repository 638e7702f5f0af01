"""`meshctl explain`: where a request goes and why: the sidecars' own Decisions (meshctl.decision), in words."""

from meshctl.explain.compose import explain
from meshctl.explain.result import ExplainError, Explanation, Question, backend_name, parse_header
from meshctl.explain.text import text_report

__all__ = ["ExplainError", "Explanation", "Question", "backend_name", "explain", "parse_header", "text_report"]

"""Policy tests: requests and what must happen to them, checked against the compiled policy."""

from meshctl.policytest.cases import Case, Expect, load_test_files
from meshctl.policytest.runner import CaseResult, run_cases

__all__ = ["Case", "CaseResult", "Expect", "load_test_files", "run_cases"]

"""The request path as pure functions of the compiled config: the sidecar runs them, `explain` prints them.

`decide(config, request) -> Decision` (`decide.py`) is the one routing decision; it is built from
rule matching, splits, sticky choice and rewrites (`routing.py`), the access verdict
(`access.py`) and header operations with mitmproxy's semantics (`headers.py`). This package
imports the contract, the standard library and mitmproxy's `Headers` only: a sidecar loads it.
"""

from meshctl.decision.decide import (
    NEVER_REACHED,
    Answer,
    Decision,
    Request,
    decide,
    retry_eligibility,
    retry_unreached_only,
    unreached_retries,
)

__all__ = ["NEVER_REACHED", "Answer", "Decision", "Request", "decide", "retry_eligibility", "retry_unreached_only",
           "unreached_retries"]

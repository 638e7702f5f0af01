"""docs/rules.md documents every rule id the validator can report, and no other."""

from __future__ import annotations

import re

from meshctl.validate.diagnostics import RULES
from tests.conftest import REPO


def test_every_rule_is_documented_with_a_heading() -> None:
    text = (REPO / "docs" / "rules.md").read_text()
    documented = set(re.findall(r"^### (MESH\d{3}) ", text, flags=re.MULTILINE))
    assert documented == set(RULES)


def test_every_rule_id_used_in_code_is_registered() -> None:
    used: set[str] = set()
    for path in (REPO / "meshctl").rglob("*.py"):
        used |= set(re.findall(r'"(MESH\d{3})"', path.read_text()))
    assert used <= set(RULES), used - set(RULES)

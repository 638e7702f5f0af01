"""Editing a rule's weights keeps the rest of the file as the user wrote it."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.errors import UsageError
from meshctl.promote.weights import read_weights, step_weights, write_weights

ROUTE = """\
# Reviews: a comment that must survive.
apiVersion: meshctl/v1alpha1
kind: Route
metadata:
  name: reviews
spec:
  service: reviews
  rules:
    - name: beta
      match:
        - headers: {end-user: {exact: jason}}
      backends:
        - {version: v2, weight: 100}
    - name: default
      backends:
        - {version: v1, weight: 90}   # the old one
        - {version: v2, weight: 10}
      timeout: 3s
---
apiVersion: meshctl/v1alpha1
kind: Service
metadata: {name: other}
spec: {versions: [{name: v1, endpoints: ["127.0.0.1:1"]}]}
"""


def policy(tmp_path: Path) -> Path:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "reviews.yaml").write_text(ROUTE)
    return tmp_path


def test_reads_the_default_rule(tmp_path: Path) -> None:
    current = read_weights(policy(tmp_path), "reviews", None)
    assert current.rule == "default" and current.weights == {"v1": 90, "v2": 10}


def test_writes_only_the_weights(tmp_path: Path) -> None:
    pdir = policy(tmp_path)
    current = read_weights(pdir, "reviews", None)
    write_weights(pdir, "reviews", current, step_weights(current.weights, "v2", "v1", 25))
    text = (pdir / "routes" / "reviews.yaml").read_text()
    assert text == ROUTE.replace("weight: 90}", "weight: 75}").replace(
        "{version: v2, weight: 10}", "{version: v2, weight: 25}")


def test_retiring_a_version_removes_its_backend(tmp_path: Path) -> None:
    pdir = policy(tmp_path)
    current = read_weights(pdir, "reviews", "default")
    write_weights(pdir, "reviews", current, {"v2": 100})
    assert read_weights(pdir, "reviews", "default").weights == {"v2": 100}
    assert "# Reviews: a comment that must survive." in (pdir / "routes" / "reviews.yaml").read_text()


def test_a_named_rule_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no rule named 'nope'"):
        read_weights(policy(tmp_path), "reviews", "nope")


def test_a_service_without_route_gets_one(tmp_path: Path) -> None:
    current = read_weights(tmp_path, "ratings", None)
    assert current.created
    write_weights(tmp_path, "ratings", current, {"v1": 95, "v2": 5})
    again = read_weights(tmp_path, "ratings", None)
    assert again.weights == {"v1": 95, "v2": 5} and not again.created


def test_steps_leave_other_versions_alone() -> None:
    assert step_weights({"v1": 80, "v2": 0, "v3": 20}, "v2", "v1", 50) == {"v1": 30, "v2": 50, "v3": 20}
    with pytest.raises(UsageError, match="other versions"):
        step_weights({"v1": 80, "v2": 0, "v3": 20}, "v2", "v1", 100)

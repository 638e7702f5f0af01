"""The rollout view's promotion card reads promote's own journal (meshctl.rollout.promotion):
a journal as promote writes it, none, and a damaged one (an error on the card, no traceback)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from meshctl.dashboard.mesh import MeshState
from meshctl.dashboard.views import read_promotion
from meshctl.rollout import promotion


def mesh_at(root: Path) -> MeshState:
    return cast(MeshState, SimpleNamespace(state=SimpleNamespace(root=root)))


def test_the_card_shows_the_journal_promote_wrote(tmp_path: Path) -> None:
    assert read_promotion(mesh_at(tmp_path)) is None
    promotion.write(tmp_path, promotion.Journal(
        service="reviews", target="v2", source="v1", rule="default", steps=[5, 25, 100],
        interval_ms=1_000, passed=1, last_good={"v1": 95, "v2": 5},
    ))
    shown = read_promotion(mesh_at(tmp_path))
    assert shown is not None
    assert (shown["service"], shown["passed"], shown["current"], shown["commits"]) == ("reviews", 1, 25, [])


def test_a_damaged_journal_is_an_error_on_the_card(tmp_path: Path) -> None:
    promotion.path_in(tmp_path).write_text('{"steps": "many"')
    shown = read_promotion(mesh_at(tmp_path))
    assert shown is not None and "promote.json is damaged" in shown["error"]

"""Compiled config A vs B -> sorted change items -> text, markdown or JSON."""

from meshctl.diff.engine import diff_meshes
from meshctl.diff.items import Change
from meshctl.diff.report import REPORTERS

__all__ = ["REPORTERS", "Change", "diff_meshes"]

"""Every `--format` (and import's SOURCE) is a typed choice: `--help` lists the values, a wrong one
is a usage error (exit 2) naming the option and the values, never a traceback or exit 1/3."""

from __future__ import annotations

import os
from typing import get_args

import pytest

from meshctl.cli.main import main

COMMANDS = {
    ("validate",): ("text", "json", "github", "sarif"),
    ("test",): ("text", "json", "github"),
    ("diff",): ("text", "markdown", "json"),
    ("explain",): ("text", "json"),
    ("import",): ("text", "json"),
    ("status",): ("text", "json"),
    ("history",): ("text", "json"),
    ("apply",): ("text", "json"),
    ("ca", "show"): ("text", "json"),
}


@pytest.fixture(autouse=True)
def wide_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "COLUMNS", "200")  # one help row per option


@pytest.mark.parametrize(("command", "choices"), list(COMMANDS.items()), ids=" ".join)
def test_help_lists_the_format_choices(
    command: tuple[str, ...], choices: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--help"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "--format" in line)
    assert f"<{'|'.join(choices)}>" in row


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_a_wrong_format_is_a_usage_error(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--format", "xml"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for '--format'" in err and "'xml'" in err and "'json'" in err
    assert "Traceback" not in err


def test_import_source_is_a_choice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--help"]) == 0
    assert "<istio|gateway-api>" in capsys.readouterr().out
    assert main(["import", "linkerd", "x.yaml"]) == 2
    assert "'linkerd' is not one of 'istio', 'gateway-api'" in capsys.readouterr().err


def test_the_listed_choices_are_the_reporters() -> None:
    """The typed choices are spelled beside each command; they must be exactly its reporters."""
    from meshctl.cli.diff import DiffFormat
    from meshctl.cli.import_ import ImportSource
    from meshctl.cli.validate import ValidateFormat
    from meshctl.diff import REPORTERS as DIFF
    from meshctl.importers.report import REPORTERS as IMPORT
    from meshctl.importers.run import SOURCES
    from meshctl.validate.report import REPORTERS as VALIDATE

    assert get_args(ValidateFormat) == tuple(VALIDATE)
    assert get_args(DiffFormat) == tuple(DIFF)
    assert get_args(ImportSource) == tuple(SOURCES)
    assert tuple(IMPORT) == COMMANDS[("import",)]

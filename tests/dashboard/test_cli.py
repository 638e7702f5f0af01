"""`meshctl dashboard` refuses bad input with a clear message and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshctl.cli.main import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be 0..65535"),
        (["--interval", "0"], "--interval must be > 0"),
        (["--prometheus", "localhost:9090"], "--prometheus must be an http(s) URL"),
    ],
)
def test_bad_options_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["dashboard", "--state", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_nothing_running_here_names_the_state_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "--state", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert f"nothing is running from {tmp_path / 'st'}" in err and "Traceback" not in err

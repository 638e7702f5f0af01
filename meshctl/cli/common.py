"""Options and small helpers shared by several commands."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

import typer

from meshctl.cli.escape import terminal_safe
from meshctl.errors import UsageError

if TYPE_CHECKING:
    from meshctl.validate.diagnostics import Diagnostic

DEFAULT_POLICY_DIR = Path("mesh.d")
TextOrJson = Literal["text", "json"]  # a --format typed this way is checked and listed in --help

PolicyDirArgument = Annotated[
    Path | None, typer.Argument(help="Policy directory (default ./mesh.d).", show_default=False)
]
PolicyDirOption = Annotated[
    Path | None, typer.Option("--dir", help="Policy directory (default ./mesh.d).", show_default=False)
]
StateOption = Annotated[
    Path | None,
    typer.Option("--state", envvar="MESHCTL_STATE",
                 help="State directory of the local runtime (default .meshctl/ beside the policy directory).",
                 show_default=False),
]


def policy_dir(argument: Path | None = None, option: Path | None = None) -> Path:
    """The policy directory from the positional argument or --dir (they must agree)."""
    if argument is not None and option is not None and argument.resolve() != option.resolve():
        raise UsageError(f"policy directory given twice ({argument} and --dir {option})")
    return argument or option or DEFAULT_POLICY_DIR


def out(text: str) -> None:
    _write(sys.stdout, text)


def err(text: str) -> None:
    _write(sys.stderr, text + "\n")


def _write(stream: TextIO, text: str) -> None:
    """Write and flush; a reader that went away (`| head`, `| tee` after Ctrl-C) is not an
    error: the rest of the output goes nowhere, and the command still finishes what it does
    (e.g. `up` stops the mesh it started)."""
    try:
        stream.write(terminal_safe(text))  # policy text is untrusted: no escape sequences
        stream.flush()
    except BrokenPipeError:
        _discard(stream)
    except ValueError:  # already closed
        pass


def _discard(stream: TextIO) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, stream.fileno())
    os.close(devnull)


def report_diagnostics(diagnostics: Sequence[Diagnostic]) -> None:
    """Diagnostics (warnings of a valid policy, errors of an invalid one) on stderr, as validate's
    text reporter writes them: the one way every command shows them."""
    if diagnostics:
        from meshctl.validate.report import as_text

        err(as_text(list(diagnostics)).rstrip())

"""Entry point: builds the typer app from one small module per command and maps errors to exits.

Each command module exposes `register(app)`. This is the single error boundary: a
`MeshctlError` becomes its message on stderr and its exit code; anything else is a bug (exit 3).
"""

from __future__ import annotations

import importlib
import sys
import traceback

import typer

from meshctl.errors import MeshctlError

COMMAND_MODULES = (
    "validate",
    "compile",
    "schema",
    "init",
    "diff",
    "explain",
    "policytest",
    "sidecar",
    "ca",
    "up",
    "status",
    "apply",
    "render",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="meshctl",
        help="A GitOps service mesh: policy as YAML in git, mitmproxy sidecars enforce it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"meshctl.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"meshctl.cli.{name}":
                continue  # command not part of this build
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    app = build_app()
    try:
        app(args=argv, standalone_mode=False)
    except MeshctlError as exc:
        message = str(exc)
        if message:
            print(f"meshctl: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("meshctl: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except Exception as exc:  # click usage errors and bugs
        import click

        if isinstance(exc, click.exceptions.Abort):
            return 130
        if isinstance(exc, click.ClickException):
            exc.show()
            return 2
        traceback.print_exc()
        print("meshctl: internal error (this is a bug; please report it)", file=sys.stderr)
        return 3
    return 0


def run() -> None:
    sys.exit(main())

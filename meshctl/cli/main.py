"""Entry point: builds the typer app from one small module per command and maps errors to exits.

Each command module exposes `register(app)`. Only the module of the command being run is
imported (a sidecar's mitmproxy need not load for `validate`); `--help` loads them all.
This is the single error boundary: a `MeshctlError` becomes its message on stderr and its exit
code; anything else is a bug (exit 3).
"""

from __future__ import annotations

import gc
import importlib
import io
import sys
import traceback

import typer

try:  # recent typer vendors click; its parser raises these
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException  # type: ignore[assignment]
from typer import Abort, Exit

from meshctl.cli.escape import terminal_safe
from meshctl.errors import MeshctlError

# command name -> module in meshctl.cli that registers it; listed in help order
COMMANDS = {
    "init": "init",
    "validate": "validate",
    "test": "policytest",
    "compile": "compile",
    "diff": "diff",
    "explain": "explain",
    "up": "up",
    "down": "up",
    "status": "status",
    "dashboard": "dashboard",
    "apply": "apply",
    "history": "apply",
    "rollback": "apply",
    "promote": "promote",
    "sidecar": "sidecar",
    "ca": "ca",
    "render": "render",
    "import": "import_",
    "prometheus-config": "prometheus",
    "schema": "schema",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    """The one module the invoked command needs, or all of them (help, unknown command)."""
    for arg in argv:
        if arg.startswith("-"):
            continue
        return (COMMANDS[arg],) if arg in COMMANDS else COMMAND_MODULES
    return COMMAND_MODULES


def _root() -> None:
    """A GitOps service mesh: policy as YAML in git, mitmproxy sidecars enforce it."""


def build_app(modules: tuple[str, ...] = COMMAND_MODULES) -> typer.Typer:
    app = typer.Typer(
        name="meshctl",
        help="A GitOps service mesh: policy as YAML in git, mitmproxy sidecars enforce it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)  # always a command group, even when one command is loaded
    for name in modules:
        try:
            module = importlib.import_module(f"meshctl.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"meshctl.cli.{name}":
                continue  # command not part of this build
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    app = build_app(_modules_for(args))
    try:
        app(args=args, standalone_mode=False, prog_name="meshctl")
    except MeshctlError as exc:
        diagnostics = getattr(exc, "diagnostics", ())
        if diagnostics:  # an invalid policy: its diagnostics, the way validate reports them
            from meshctl.cli.common import report_diagnostics

            report_diagnostics(diagnostics)
        message = str(exc)
        if message:
            print(f"meshctl: {terminal_safe(message)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("meshctl: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except Abort:
        return 130
    except Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except OSError as exc:  # the environment refused: unwritable directory, full disk, ...
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"meshctl: {terminal_safe(f'{exc.strerror or exc}{where}')}", file=sys.stderr)
        return 2
    except ClickException as exc:  # usage errors found by the argument parser
        shown = io.StringIO()
        exc.show(file=shown)  # it quotes the argument given: untrusted
        sys.stderr.write(terminal_safe(shown.getvalue()))
        return 2
    except Exception:  # a bug: show it, exit 3
        traceback.print_exc()
        print("meshctl: internal error (this is a bug; please report it)", file=sys.stderr)
        return 3
    return 0


def run() -> None:
    code = main()
    # The interpreter's last act is a full collection over every object the command loaded
    # (pydantic's models, the compiler): 0.1-0.25 s of an `up` or a `status`. Frozen objects are
    # left to the OS instead; atexit handlers and the joins of running threads still run.
    gc.freeze()
    sys.exit(code)

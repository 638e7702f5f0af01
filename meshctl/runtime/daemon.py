"""`python -m meshctl.runtime.daemon --state DIR [--warm]`: the supervisor daemon's entry point.

With `--warm` (`up` starts the daemon before it compiles) the fork server is launched first and
only then is the supervisor imported (asyncio, pydantic, the state records: 0.25-0.4 s), so the
server's ~1 s of warming starts that much sooner. Nothing heavy is imported here for that
reason (test_compiled_dir checks it); the rest is `supervisor.supervise`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from meshctl.runtime.forklaunch import FORKSERVER, Launched, forking_wanted, launch_fork_server, server_env
from meshctl.runtime.state import StateDir


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshctl-supervisor")
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--warm", action="store_true",
                        help="start the fork server now, before plan.json is written")
    args = parser.parse_args(argv)
    state = StateDir(args.state.resolve())
    state.ensure()
    # Until the supervisor's loop has its own handlers, SIGTERM (`up` refused the policy while
    # we started) still unwinds: the pid file goes with the lock, the server launched below is
    # killed rather than left running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    launched: Launched | None = None
    try:
        if args.warm and forking_wanted():
            env = server_env(dict(os.environ), str(state.root))
            launched = launch_fork_server(sys.executable, env, str(state.log(FORKSERVER)))
        from meshctl.runtime.supervisor import supervise

        return supervise(state, args.warm, launched)
    finally:
        if launched is not None:
            launched.kill()  # a no-op once the supervisor adopted it


if __name__ == "__main__":
    sys.exit(main())

"""`python -m meshctl.runtime.daemon --state DIR [--warm]`: how the CLI starts the supervisor.

With `--warm` (`up` starts the daemon before it compiles) the fork server is launched first and
only then is the supervisor imported (asyncio, pydantic, the state records: 0.25-0.4 s), so the
server's ~1 s of warming starts that much sooner. Nothing heavy is imported here for that
reason (test_compiled_dir checks it); everything else is `supervisor.main`.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from meshctl.runtime.forklaunch import FORKSERVER, Launched, forking_wanted, launch_fork_server, server_env
from meshctl.runtime.state import StateDir


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # `up` stops a daemon whose policy it refused with SIGTERM, maybe while we import: unwind
    # (and kill the server launched below) rather than die and leave it running.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    launched: Launched | None = None
    try:
        root = args[args.index("--state") + 1] if "--state" in args[:-1] else None
        if "--warm" in args and root and forking_wanted():
            state = StateDir(Path(root).resolve())
            state.ensure()
            env = server_env(dict(os.environ), str(state.root))
            launched = launch_fork_server(sys.executable, env, str(state.log(FORKSERVER)))
        from meshctl.runtime.supervisor import main as supervise

        return supervise(args, launched=launched)
    finally:
        if launched is not None:
            launched.kill()  # a no-op once the supervisor adopted it


if __name__ == "__main__":
    sys.exit(main())

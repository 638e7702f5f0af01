"""Launching the fork server: its command line, environment and process, nothing else.

It imports nothing heavy (no asyncio, no pydantic) so that the daemon's entry point
(`meshctl.runtime.daemon`) can launch the server before it imports the supervisor: the
server's ~1 s of warming then overlaps those 0.25-0.4 s of imports too. `forkclient` talks to
the server once it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass

from meshctl.runtime.marks import NAME_ENV, OWNER_ENV
from proxy_addon.forkwire import CHANNEL_FD_ARG, MODULE

SPAWN_ENV = "MESHCTL_SIDECAR_SPAWN"  # "exec": start every sidecar the old way (benchmarks)
FORKSERVER = "forkserver"  # its MESHCTL_PROCESS name and log file
NAME_ROOM = 160  # the fork server's MESHCTL_PROCESS is padded to this: children write theirs over it


def forking_wanted() -> bool:
    return os.environ.get(SPAWN_ENV, "fork") != "exec" and hasattr(os, "pidfd_open")


def server_env(base: dict[str, str], owner: str) -> dict[str, str]:
    """The fork server's environment: the supervisor's mark, its name padded so that each
    child can write its own name over it (`proxy_addon.forkserver.mark_environ`)."""
    env = {k: v for k, v in base.items() if k != NAME_ENV}
    return env | {OWNER_ENV: owner, NAME_ENV: FORKSERVER.ljust(NAME_ROOM)}


@dataclass
class Launched:
    """A fork server just started: its pid (our child, the leader of its own session and group)
    and our end of its channel. `adopted` once a `forkclient.ForkServer` runs it."""

    pid: int
    channel: socket.socket
    adopted: bool = False

    def kill(self) -> None:
        """Kill and reap it, unless it was adopted. Until then nothing else reaps our child, so
        its pid is still its own."""
        if self.adopted:
            return
        self.adopted = True  # once
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.channel.close()


def launch_fork_server(python: str, env: dict[str, str], log_path: str) -> Launched:
    """Start `python -OO -m proxy_addon.forkserver` with one end of a socket pair, its output
    appended to `log_path`, in its own session, in our working directory."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with open(log_path, "ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start fork server\n".encode())
        fd = theirs.fileno()
        os.set_inheritable(fd, True)
        pid = os.posix_spawn(
            python, [python, "-OO", "-m", MODULE, CHANNEL_FD_ARG, str(fd)], env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Launched(pid, ours)

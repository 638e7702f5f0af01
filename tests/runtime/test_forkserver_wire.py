"""The fork server on its own: a real `python -OO -m proxy_addon.forkserver` on a socket pair,
this test process standing in for the supervisor (a child subreaper, so the forked sidecars
become its children and their exit status can be read)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshctl.runtime.forkclient import (
    PR_SET_CHILD_SUBREAPER,
    ForkedProcess,
    forkable,
    kill_unreported,
)
from meshctl.runtime.forklaunch import FORKSERVER, NAME_ROOM
from proxy_addon.forkwire import (
    CHANNEL_FD_ARG,
    MODULE,
    ForkReply,
    ForkRequest,
    WireError,
    decode_ready,
)
from tests.runtime.helpers import pid_alive


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc, self.sock = proc, sock
        self.file = sock.makefile("rwb")

    def ask(self, line: bytes) -> ForkReply:
        self.file.write(line)
        self.file.flush()
        return ForkReply.decode(self.file.readline())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    ours, theirs = socket.socketpair()
    env = dict(os.environ) | {"MESHCTL_PROCESS": FORKSERVER.ljust(NAME_ROOM)}
    proc = subprocess.Popen(
        [sys.executable, "-OO", "-m", MODULE, CHANNEL_FD_ARG, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),), env=env, stdout=subprocess.DEVNULL, cwd=tmp_path,
    )
    theirs.close()
    s = Server(proc, ours)
    try:
        ours.settimeout(60)
        assert decode_ready(s.file.readline()) == proc.pid
        yield s
    finally:
        s.file.close()
        ours.close()
        proc.wait(timeout=10)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)  # the rest of this test process as before


def feed_until_exit(pid: int, fifos: list[Path], data: bytes) -> int:
    """Write `data` into whichever FIFO the child opens, until it exits; its wait status
    (it is our child: reparented to us, the subreaper)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        for fifo in fifos:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # no reader yet
                continue
            with contextlib.suppress(OSError):
                os.write(fd, data)
            os.close(fd)
        time.sleep(0.02)
    raise AssertionError("the child did not exit")


def test_a_forked_child_is_named_logs_to_its_file_and_exits_with_its_code(
    server: Server, tmp_path: Path
) -> None:
    log = tmp_path / "sidecar.log"
    # the child blocks reading its config and bindings (FIFOs) until we write: alive meanwhile
    missing, bindings = tmp_path / "config.fifo", tmp_path / "bindings.fifo"
    os.mkfifo(missing)
    os.mkfifo(bindings)
    reply = server.ask(ForkRequest(
        name="svc-v1-0.sidecar", args=("--config", str(missing), "--bindings", str(bindings)),
        cwd=str(tmp_path), log=str(log), env={"EXTRA": "1"},
    ).encode())
    assert reply.pid is not None and reply.pid != server.proc.pid
    cmdline = Path(f"/proc/{reply.pid}/cmdline").read_bytes()
    # what `meshctl down` reads: the child's own name over the server's padded one (written
    # once it may run, so looked for until then)
    mark = b"MESHCTL_PROCESS=svc-v1-0.sidecar".ljust(len("MESHCTL_PROCESS=") + NAME_ROOM)
    deadline = time.monotonic() + 30
    while mark not in Path(f"/proc/{reply.pid}/environ").read_bytes().split(b"\0"):
        assert time.monotonic() < deadline, "the child never wrote its name"
        time.sleep(0.02)
    assert os.getpgid(reply.pid) == reply.pid  # its own process group
    assert os.getsid(reply.pid) == reply.pid  # and session: its own CPU share (autogroup)
    status = feed_until_exit(reply.pid, [missing, bindings], b"not a config")
    assert MODULE.encode() in cmdline  # forked, never exec'd
    assert os.waitstatus_to_exitcode(status) == 2  # a config that cannot be read: exit 2
    text = log.read_text()
    assert "meshctl sidecar:" in text and str(missing) in text, text
    server_env = Path(f"/proc/{server.proc.pid}/environ").read_bytes()
    assert b"MESHCTL_PROCESS=" + FORKSERVER.encode() + b" " in server_env  # its own untouched


def test_bad_requests_are_refused_and_the_server_serves_on_then_exits_at_end_of_channel(
    server: Server, tmp_path: Path
) -> None:
    assert server.ask(b"not json\n").error
    assert server.ask(b'{"name": "x"}\n').error
    # a child that cannot become the sidecar (its directory is gone) says why in its log
    reply = server.ask(ForkRequest(name="x", args=("--help",), cwd=str(tmp_path / "gone"),
                                   log=str(tmp_path / "x.log")).encode())
    assert reply.pid is not None
    _, status = os.waitpid(reply.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert "FileNotFoundError" in (tmp_path / "x.log").read_text()
    server.file.close()
    server.sock.close()
    deadline = time.monotonic() + 10
    while server.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.proc.returncode == 0


def test_requests_sent_together_are_answered_in_order_each_child_its_own(
    server: Server, tmp_path: Path
) -> None:
    """`up` writes every sidecar's request at once: the server forks them back to back, then
    answers in the order asked, a bad request among them refused in its place."""
    def request(name: str) -> bytes:
        return ForkRequest(name=name, args=("--help",), cwd=str(tmp_path),
                           log=str(tmp_path / f"{name}.log")).encode()

    server.file.write(request("a") + b"not json\n" + request("b") + request("c"))
    server.file.flush()
    replies = [ForkReply.decode(server.file.readline()) for _ in range(4)]
    assert replies[1].error and replies[1].pid is None
    pids = [r.pid for r in (replies[0], replies[2], replies[3])]
    assert all(pids) and len(set(pids)) == 3 and server.proc.pid not in pids
    for name, pid in zip("abc", pids, strict=True):
        assert pid is not None
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # its own group and session
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert "usage:" in (tmp_path / f"{name}.log").read_text()  # each child its own log


def test_a_new_confdir_gets_the_servers_premade_ca_and_a_used_one_keeps_its_own(
    server: Server, tmp_path: Path
) -> None:
    from mitmproxy.certs import CertStore

    used = tmp_path / "used"
    used.mkdir()
    CertStore.create_store(used, "mitmproxy", 2048)
    own = (used / "mitmproxy-ca.pem").read_bytes()
    confdirs = [tmp_path / "new-a", tmp_path / "new-b", used]
    for confdir in confdirs:
        reply = server.ask(ForkRequest(name=confdir.name, args=("--confdir", str(confdir), "--help"),
                                       cwd=str(tmp_path), log=str(tmp_path / "x.log")).encode())
        assert reply.pid is not None
        _, status = os.waitpid(reply.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    made = [(d / "mitmproxy-ca.pem").read_bytes() for d in confdirs]
    assert made[0] == made[1] != own and made[2] == own
    assert (confdirs[0] / "mitmproxy-ca.pem").stat().st_mode & 0o777 == 0o600
    store = CertStore.from_store(confdirs[0], "mitmproxy", 2048)  # what mitmproxy loads
    assert store.default_ca.subject == [("CN", "mitmproxy"), ("O", "mitmproxy")]
    assert not store.default_ca.has_expired()
    assert sorted(p.name for p in confdirs[0].iterdir()) == ["mitmproxy-ca.pem", "mitmproxy-dhparam.pem"]


def test_messages_and_forkable_command_lines() -> None:
    req = ForkRequest(name="a", args=("--config", "c"), cwd="/", log="/l", env={"K": "V"})
    assert ForkRequest.decode(req.encode()) == req
    assert ForkReply.decode(ForkReply(pid=7).encode()) == ForkReply(pid=7)
    assert ForkReply.decode(ForkReply(error="no").encode()) == ForkReply(error="no")
    for bad in (b"[]", b'{"pid": -1}', b"\xff"):
        with pytest.raises(WireError):
            ForkReply.decode(bad)
    with pytest.raises(WireError):
        decode_ready(b'{"ready": 0}')
    py = "/usr/bin/python3"
    assert forkable((py, "-OO", "-m", "proxy_addon", "--config", "c"), py) == ("--config", "c")
    assert forkable((py, "-m", "proxy_addon", "--config", "c"), py) is None  # other flags
    assert forkable(("/other/python", "-OO", "-m", "proxy_addon"), py) is None
    assert forkable((py, "-m", "shop.catalog"), py) is None


def test_the_unreported_fork_is_killed_the_server_and_watched_sidecars_spared() -> None:
    """The lost child is told apart by being unwatched, not by its name (it may not have
    written it yet): here none of them has one."""
    def child() -> subprocess.Popen[bytes]:  # a command line like the fork server's
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", MODULE],
                                start_new_session=True)

    lost, server, watched = child(), child(), child()
    ForkedProcess.live.add(watched.pid)
    try:
        kill_unreported(spare=server.pid)
        assert lost.wait(timeout=10) == -9
        time.sleep(0.2)
        assert server.poll() is None and watched.poll() is None
    finally:
        ForkedProcess.live.discard(watched.pid)
        for proc in (lost, server, watched):
            proc.kill()
            proc.wait()


HUNG_SERVER = """\
import json, os, sys, time
fd = int(sys.argv[sys.argv.index("--channel-fd") + 1])
os.write(fd, json.dumps({"ready": os.getpid()}).encode() + b"\\n")
while os.read(fd, 65536):  # reads every request, answers none
    pass
"""


def test_a_fork_server_that_stops_answering_is_killed_and_every_waiting_request_execd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The supervisor's client against a server that is ready, then hangs: each request sent
    together gives up at the request timeout (the caller execs), the server is killed and
    the keeper restarts one."""
    import asyncio

    from meshctl.runtime import forkclient

    fake = tmp_path / "fake" / "proxy_addon"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "forkserver.py").write_text(HUNG_SERVER)
    monkeypatch.setattr(forkclient, "REQUEST_TIMEOUT_S", 0.5)
    monkeypatch.setattr(forkclient, "RESTART_DELAY_S", (0.1, 0.1, 0.1))
    env = dict(os.environ) | {"PYTHONPATH": str(tmp_path / "fake")}
    monkeypatch.chdir(tmp_path)  # the server runs in our directory: not the real package's

    async def scenario() -> tuple[list[object], int, int | None, str, int]:
        server = forkclient.ForkServer(sys.executable, env, str(tmp_path / "fs.log"))
        server.start()
        try:
            async with asyncio.timeout(30):
                await server.ready.wait()
            assert server.proc is not None
            first = server.proc.pid
            spawns = [server.spawn(f"s{i}", ("--help",), str(tmp_path), {}, str(tmp_path / "x.log"))
                      for i in range(3)]
            results = list(await asyncio.gather(*spawns))
            async with asyncio.timeout(30):
                while server.proc is None or server.proc.pid == first or not server.ready.is_set():
                    await asyncio.sleep(0.05)
            return results, first, server.proc.returncode, server.state.status, server.state.restarts
        finally:
            await server.stop()

    caplog.set_level("INFO", logger="meshctl.supervisor")
    results, first, running, status, restarts = asyncio.run(scenario())
    assert "fork server did not answer" in caplog.text, caplog.text
    assert results == [None, None, None]  # every waiting request: exec'd instead
    assert not pid_alive(first)  # the hung server was killed
    assert running is None and status == "ready" and restarts == 1  # and replaced

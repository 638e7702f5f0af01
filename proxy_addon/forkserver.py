"""`python -OO -m proxy_addon.forkserver --channel-fd N`: a warm parent that forks sidecars.

A fresh sidecar spends about a second of CPU importing Python, mitmproxy and the addon before
it reads its config. The supervisor starts this process once per `up`: it does that work once
(`proxy_addon.__main__.warm`), collects and freezes the heap (`gc.freeze()`: the collector
never writes to those objects' headers again, so their pages stay shared with every child),
then waits on its channel (`proxy_addon.forkwire`) for requests and forks a sidecar for each,
which only loads its config and opens its listeners. It also makes, once, the mitmproxy CA
each sidecar would otherwise generate for itself (`make_ca`, `seed_confdir`).

It forks only while it is single-threaded and has no event loop (it never creates one): a
child starts its own loop in `main`. Each sidecar is forked twice (the middle process exits at
once; the sidecar takes its own session and reports its pid), so it is reparented
to the supervisor, a child subreaper: the supervisor waits for it, gets its exit status and
signals its process group as for a process it started itself, and this server dying (or being
restarted) leaves every running sidecar alone. A child starts serving only once this server has
handed its pid to the supervisor (a byte on a pipe): if the server dies between the fork and
the reply, the child exits instead of running unowned. Requests that arrive together are forked
back to back, then answered in order.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from proxy_addon.forkwire import (
    CHANNEL_FD_ARG,
    MAX_LINE,
    ForkReply,
    ForkRequest,
    WireError,
    ready_line,
)

NAME_ENV = "MESHCTL_PROCESS"  # the supervisor's mark (meshctl.runtime.ownership)
GO = b"1"


def threads() -> int:
    """Threads of this process, as the kernel counts them (C libraries' threads included)."""
    return len(os.listdir("/proc/self/task"))


class Channel:
    """Lines over the socket the supervisor passed, read with plain os.read: no Python file
    object owns the descriptor, so a child can close it without leaving a stale owner."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def lines(self) -> list[bytes] | None:
        """The next complete lines; None at end of file (the supervisor went away)."""
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
            if len(self.buf) > MAX_LINE:
                raise WireError("request line too long")
        *done, self.buf = self.buf.split(b"\n")
        return [line for line in done if line.strip()]


@dataclass
class Pending:
    """A sidecar forked and waiting for its go byte; it writes its pid on `pid_r`."""

    middle: int
    pid_r: int
    go_w: int


def begin_fork(req: ForkRequest, channel: Channel, ca_pem: bytes) -> Pending:
    """Fork the sidecar of `req` without waiting for it (`finish_fork` collects its pid), so a
    batch of requests is forked back to back while the first children already start."""
    if threads() != 1:
        raise OSError("the fork server is not single-threaded; refusing to fork")
    pid_r, pid_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(pid_r)
            os.close(go_w)
            if os.fork() == 0:
                _child(req, channel, ca_pem, pid_w, go_r)
        finally:
            os._exit(0)  # the sidecar is orphaned now: the supervisor (subreaper) adopts it
    os.close(pid_w)
    os.close(go_r)
    return Pending(middle=middle, pid_r=pid_r, go_w=go_w)


def finish_fork(pending: Pending) -> int:
    """The pid of a sidecar `begin_fork` started; OSError (its go pipe closed: it exits) if it
    did not report one."""
    try:
        data = b""
        while chunk := os.read(pending.pid_r, 64):  # EOF once the middle and the sidecar closed it
            data += chunk
    finally:
        os.close(pending.pid_r)
        os.waitpid(pending.middle, 0)
    if not data.isdigit():
        os.close(pending.go_w)
        raise OSError("the forked sidecar did not report its pid")
    return int(data)


def _child(req: ForkRequest, channel: Channel, ca_pem: bytes, pid_w: int, go_r: int) -> NoReturn:
    code = 70
    try:
        os.close(channel.fd)
        # Its own session and process group before anyone learns its pid, as an exec'd sidecar
        # has: signalled as a group, and (with the kernel's autogroup scheduling) given its own
        # share of the CPU rather than one share for every sidecar of the fork server.
        os.setsid()
        os.write(pid_w, str(os.getpid()).encode())
        os.close(pid_w)
        go = os.read(go_r, 1)
        os.close(go_r)
        if go != GO:
            os._exit(0)  # the server died before the supervisor learnt of this child
        _become(req)
        seed_confdir(req.args, ca_pem)
        from proxy_addon.__main__ import main

        code = main(list(req.args))
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _become(req: ForkRequest) -> None:
    """What exec would have given the child: its log as stdout/stderr, /dev/null as stdin, a
    fresh interpreter's signal dispositions, its environment and directory, its own seeds."""
    log = os.open(req.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mark_environ(NAME_ENV, req.name)
    os.environ.update(req.env)
    os.environ[NAME_ENV] = req.name
    os.chdir(req.cwd)
    # random reseeds itself after fork (os.register_at_fork); once more costs nothing. OpenSSL 3
    # notices the new pid and reseeds its own generator; `secrets` reads the kernel's.
    random.seed()
    sys.argv = [sys.argv[0], *req.args]


def make_ca() -> bytes:
    """The mitmproxy CA (key then certificate, PEM) this server gives every sidecar it forks.

    mitmproxy makes a CA in its confdir when it finds none: a 2048-bit RSA key, 70-80 ms of
    CPU, per sidecar. The sidecars never sign with it (their certificates are the mesh's), so
    one made here, once per server, serves them all."""
    from cryptography.hazmat.primitives import serialization
    from mitmproxy.certs import create_ca
    from mitmproxy.options import CONF_BASENAME, KEY_SIZE

    key, cert = create_ca(organization=CONF_BASENAME, cn=CONF_BASENAME, key_size=KEY_SIZE)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)


def seed_confdir(args: tuple[str, ...], ca_pem: bytes) -> None:
    """Put the premade CA where mitmproxy looks for one (`<confdir>/mitmproxy-ca.pem`), unless
    the confdir has its own: a restarted sidecar keeps the CA it had. Private to its owner
    (0600), as mitmproxy writes it."""
    if "--confdir" not in args[:-1]:
        return  # no confdir given: the sidecar makes a temporary one with a CA of its own
    from mitmproxy.options import CONF_BASENAME

    from meshctl.fsio import write_atomic

    target = Path(args[args.index("--confdir") + 1]) / f"{CONF_BASENAME}-ca.pem"
    if not target.exists():
        write_atomic(target, ca_pem, mode=0o600)


def mark_environ(key: str, value: str) -> None:
    """Write `value` over `key`'s value in the environment block the kernel shows as
    /proc/PID/environ (the one exec gave the server): `meshctl down` finds a killed
    supervisor's processes by that mark and name. The server is started with the value padded
    with spaces, so a name up to that length fits; readers strip the padding."""
    try:
        libc = ctypes.CDLL(None)
        environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    except (OSError, ValueError):
        return
    prefix = f"{key}=".encode()
    i = 0
    while (addr := environ[i]) is not None:
        entry = ctypes.string_at(addr)
        if entry.startswith(prefix):
            room = len(entry) - len(prefix)
            new = value.encode()[:room].ljust(room)
            ctypes.memmove(addr + len(prefix), new, room)
            return
        i += 1


def serve(channel: Channel, ca_pem: bytes) -> int:
    """Answer requests in the order they came. Every request already read is forked before the
    first is answered: `up` asks for all its sidecars at once."""
    while (lines := channel.lines()) is not None:
        batch: list[Pending | str] = []
        for line in lines:
            try:
                batch.append(begin_fork(ForkRequest.decode(line), channel, ca_pem))
            except (WireError, OSError) as exc:
                batch.append(str(exc))
        for item in batch:
            answer(channel, item)
    return 0


def answer(channel: Channel, item: Pending | str) -> None:
    """Reply to one request (its pid, or why not), then let its sidecar run."""
    if isinstance(item, str):
        channel.send(ForkReply(error=item).encode())
        return
    try:
        pid = finish_fork(item)
    except OSError as exc:
        channel.send(ForkReply(error=str(exc)).encode())
        return
    try:
        channel.send(ForkReply(pid=pid).encode())
        os.write(item.go_w, GO)  # the supervisor has its pid: it may run
    finally:
        os.close(item.go_w)


def release_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
    gc.freeze()  # everything imported so far: never scanned (nor written) by a child's collector


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshctl-forkserver")
    parser.add_argument(CHANNEL_FD_ARG, dest="channel_fd", type=int, required=True)
    args = parser.parse_args(argv)
    channel = Channel(args.channel_fd)
    from proxy_addon.__main__ import warm

    warm()
    preload()
    ca_pem = make_ca()
    release_heap()
    channel.send(ready_line(os.getpid()))
    try:
        return serve(channel, ca_pem)
    except BrokenPipeError:
        return 0  # the supervisor went away


def preload() -> None:
    """Modules a sidecar imports only once it runs (measured with -X importtime)."""
    import importlib

    for name in LATE_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


LATE_IMPORTS = ("encodings.idna", "stringprep")


if __name__ == "__main__":
    sys.exit(main())

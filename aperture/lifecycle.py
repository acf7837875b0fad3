"""How the servers' processes start and end: one listener per port, and no process outliving its parent.

granian binds its listening socket with SO_REUSEPORT in every worker, so a second server started on
a busy port would share it with the first, silently, and requests would alternate between the two.
`check_listen` binds the address once without SO_REUSEPORT first: a port some other socket listens
on (with or without SO_REUSEPORT) is then a start-up error that names the address.

`die_with_parent` asks Linux to signal a process when its parent ends (PR_SET_PDEATHSIG), so a
worker busy with a long request cannot keep running (and holding memory and the port) after the
server process is gone. Elsewhere it does nothing. A parser process's parent is a multiprocessing
forkserver, which only ends once all its children have (they hold its "alive" pipe), so
`die_with` has a parser process watch the worker it serves instead.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1


class ListenError(Exception):
    """The server cannot listen where it was told to; the message says where and what to do."""


def check_listen(host: str, port: int, flag: str = "--port") -> None:
    """Raise ListenError unless this process could listen on `host:port` on its own.

    SO_REUSEADDR is set, as servers do, so connections of an earlier run still in TIME_WAIT do not
    count; a listening socket does. `flag` is the option that chooses the port, for the message.
    The address is free again when this returns: granian binds it right after.
    """
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: {exc.strerror}. Check --host.") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ListenError(
                    f"{where} is already in use: another server is listening there. "
                    f"Stop that server, or choose a free port with {flag}."
                ) from None
            if exc.errno == errno.EACCES:
                raise ListenError(
                    f"cannot listen on {where}: permission denied (ports below 1024 need privileges). "
                    f"Choose a port above 1024 with {flag}."
                ) from None
            raise ListenError(f"cannot listen on {where}: {exc.strerror}. Check --host and {flag}.") from None


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have the kernel send `sig` to this process when the thread that started it ends (Linux only).

    Call it first thing in a child process. `parent`, when known, is the pid the child was started
    by: if the process has already been adopted by another, the parent is gone and `sig` is sent now.
    """
    if not sys.platform.startswith("linux"):
        return
    before = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return  # not allowed here (a seccomp sandbox): the server's own stop still ends its children
    if os.getppid() != before or (parent is not None and before != parent):
        os.kill(os.getpid(), sig)


def die_with(pid: int) -> None:
    """End this process (SIGKILL) as soon as process `pid` has ended: a daemon thread waits for it.

    Linux gives a pidfd to wait on; elsewhere the thread checks once a second.
    """

    def watch() -> None:
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            handle = -1  # already gone
        except (AttributeError, OSError):
            while _exists(pid):
                time.sleep(1)
            handle = -1
        if handle >= 0:
            select.select([handle], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name=f"die-with-{pid}", daemon=True).start()


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

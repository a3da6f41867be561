"""A fork server: one pre-started process per interpreter that forks a loader per request.

Started by the manager (supervisor/forkserver.py) as
`<python> -c "import sys; sys.path.insert(0, SDK_DIR); from workspace_manager.loader.forkserver
import main; main(FD)"` in its own session, working directory `/`, with an environment that
holds only the variables an interpreter reads while it starts (`START_VARS`), and FD one end of
a Unix SOCK_SEQPACKET socket pair. It imports what the loader imports before it loads any code
(loader/main.py: the loader, the protocol and the SDK), freezes those objects out of the
garbage collector's reach (gc.freeze: a child's collections then do not copy their pages),
reports `{"ready": ...}` and waits.

Fork safety: it never imports or runs repository code (its working directory is `/`, so the
empty entry of `sys.path` names no repository folder) and never starts a thread; it checks
the kernel's own count of its threads (/proc/self/task) before every fork and refuses to fork
if there is more than one.

A request is one message: JSON `{"id": int, "cwd": str, "env": {str: str}}` with four file
descriptors (SCM_RIGHTS, unix(7)): the location's stdin, stdout, stderr and status socket.
The server double-forks: the middle process exits at once, so the location is reparented to
the nearest child subreaper, the manager (prctl(2) PR_SET_CHILD_SUBREAPER), which reaps it and
sees its exit status as it would a process it spawned. The answer is `{"id": int, "pid": int}`
or `{"id": int, "error": str}`, possibly out of the requests' order. EOF on the socket (the
manager is gone, even by SIGKILL) ends the server.

The server waits for neither the middle process nor the location: the location itself sends
its answer on the server's socket (a SOCK_SEQPACKET message is sent whole, whoever sends it)
once it leads its own session and the middle process is gone (it is the subreaper's child by
then, so the manager can wait for it the moment it has the pid); a middle process whose fork
failed answers with the error. The server goes on to the next request at once and reaps the
middle processes as they end; one that died without a word (killed) gets its error answer from
the server. Waiting for both to be scheduled made each fork take 10-30 ms on a machine busy with
the locations just forked, and 1,000 forks in a row most of a 1,000-location start.

The location (the grandchild) starts its own session, puts the four descriptors on 0, 1, 2
and `STATUS_FD` and closes every other one, takes the request's working directory and
environment, and runs `loader.main.main()`, which reads the bootstrap line from stdin as a
spawned loader does: the manager writes it once it has the pid and has put the process in
its cgroup, so no repository code runs before that.

Standard library only, CPython >= 3.9, like the rest of the loader.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys

TYPE_CHECKING = False  # typing is for type checkers only: a forked location would inherit it
if TYPE_CHECKING:
    from typing import Dict, List, NoReturn, Optional, Tuple

#: The status socket's descriptor in a forked location (the bootstrap's `status_fd`).
STATUS_FD = 3

#: Largest request (JSON, mostly the environment) and number of descriptors accepted.
MAX_REQUEST = 1 << 20
FDS_PER_REQUEST = 4


def start_vars(env: Dict[str, str]) -> Dict[str, str]:
    """The variables of `env` that an interpreter reads only while it starts (or that its
    dynamic linker and allocator read at exec), so a forked child cannot take them on
    later: `PYTHON*` (sys.path, flags, hash seed, encodings), `LD_*`, `MALLOC_*`,
    `GLIBC_TUNABLES`, the locale that sets the file system encoding (`LANG`, `LC_ALL`,
    `LC_CTYPE`) and `HOME` (the user site folder). A location may be forked from a server
    only when these are equal in both."""
    return {
        k: v
        for k, v in env.items()
        if k.startswith(("PYTHON", "LD_", "MALLOC_"))
        or k in ("GLIBC_TUNABLES", "LANG", "LC_ALL", "LC_CTYPE", "HOME")
    }


def _preload() -> None:
    """Import what `loader.main.main()` imports before it loads repository code."""
    for name in (
        "workspace_manager.loader.main",
        "workspace_manager.loader.methods",
        "workspace_manager.loader.target",
    ):
        importlib.import_module(name)
    # the children share its pages: C msgpack (where this interpreter has it) is imported
    # here, not lazily in each location (protocol/codec.py)
    importlib.import_module("workspace_manager.protocol.codec").preload()


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _send(sock: socket.socket, message: Dict[str, object]) -> bool:
    """Send one message; False when the manager is gone (its end closed: BrokenPipeError),
    which ends the server quietly: nobody is left to read a traceback."""
    try:
        sock.send(json.dumps(message).encode())
    except OSError:
        return False
    return True


def main(fd: int) -> None:
    """Serve fork requests on the inherited socket `fd` until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the manager decides when we go (EOF)
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    initial_path = list(sys.path)
    added = _added_at_start()
    try:
        _preload()
    except BaseException as exc:  # e.g. an interpreter too old for the SDK
        _send(sock, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    problem = None
    if sys.implementation.name != "cpython":
        problem = f"{sys.implementation.name} is not CPython"
    elif _threads() != 1:
        problem = "a thread was started while importing the loader"
    if problem:
        _send(sock, {"ready": False, "error": problem})
        os._exit(1)
    gc.collect()
    gc.freeze()  # children's collections leave these objects (and their pages) alone
    if not _send(sock, {"ready": True, "pid": os.getpid(), "python": sys.version}):
        os._exit(0)
    middles: Dict[int, object] = {}  # middle process pid -> its request's id
    poller = select.poll()  # not select(): the descriptor may be above FD_SETSIZE
    poller.register(sock, select.POLLIN)
    while True:
        if middles:
            # one still running: look at it again within 50 ms even without a request
            readable = poller.poll(50)
            if not _reap(sock, middles):
                break
            if not readable:
                continue
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_REQUEST, FDS_PER_REQUEST)
        except InterruptedError:
            continue
        except OSError:
            break
        if not data and not fds:
            break  # EOF: the manager is gone
        try:
            answer = _serve(data, fds, initial_path, added, sock, middles)
        finally:
            for received in fds:
                try:
                    os.close(received)
                except OSError:
                    pass
        if answer is not None and not _send(sock, answer):
            break
    os._exit(0)


def _reap(sock: socket.socket, middles: Dict[int, object]) -> bool:
    """Reap the middle processes that ended; answer for one that ended without forking
    and without saying why (killed). False when the manager is gone."""
    while middles:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            middles.clear()
            break
        if pid == 0:
            break
        request_id = middles.pop(pid, None)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (_FORKED, _ANSWERED):
            continue
        if not _send(
            sock, {"id": request_id, "error": "the middle process exited without forking"}
        ):
            return False
    return True


#: Exit statuses of a middle process: it forked the location, or it answered with an error.
_FORKED = 0
_ANSWERED = 2


def _added_at_start() -> Dict[str, str]:
    """Variables the interpreter added to its environment while it started (PEP 538's
    LC_CTYPE coercion of the C locale): a spawned loader with the same start-up variables
    has them too, so a forked one gets them unless its own environment sets them."""
    try:
        with open("/proc/self/environ", "rb") as f:
            initial = {e.split(b"=", 1)[0] for e in f.read().split(b"\0") if b"=" in e}
    except OSError:
        return {}
    return {k: v for k, v in os.environ.items() if os.fsencode(k) not in initial}


def _serve(
    data: bytes,
    fds: List[int],
    initial_path: List[str],
    added: Dict[str, str],
    sock: socket.socket,
    middles: Dict[int, object],
) -> Optional[Dict[str, object]]:
    """The server's own answer to a request, or None when the forked processes give it."""
    request_id = None
    try:
        request = json.loads(data)
        request_id = request["id"]
        cwd = request["cwd"]
        env = request["env"]
        if not isinstance(cwd, str) or not isinstance(env, dict):
            raise ValueError("bad cwd or env")
        env = dict(added, **env)
    except (ValueError, KeyError, TypeError) as exc:
        return {"id": request_id, "error": f"bad request: {exc}"}
    if len(fds) != FDS_PER_REQUEST:
        return {
            "id": request_id,
            "error": f"expected {FDS_PER_REQUEST} descriptors, got {len(fds)}",
        }
    if _threads() != 1:
        return {"id": request_id, "error": "the fork server has more than one thread"}
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # nothing buffered may be written twice
        except Exception:
            pass
    try:
        middle = os.fork()
    except OSError as exc:
        return {"id": request_id, "error": f"fork failed: {exc}"}
    if middle == 0:
        _middle(request_id, sock, fds, cwd, env, initial_path)
    middles[middle] = request_id
    return None


def _middle(
    request_id: object,
    sock: socket.socket,
    fds: List[int],
    cwd: str,
    env: Dict[str, str],
    initial_path: List[str],
) -> NoReturn:
    """In the middle process: fork the location and exit at once (`_FORKED`), or answer
    with the error (`_ANSWERED`)."""
    status = _ANSWERED
    try:
        me = os.getpid()
        r, w = os.pipe()  # EOF on `r` once this process is gone
        try:
            location = os.fork()
        except OSError as exc:
            _send(sock, {"id": request_id, "error": f"fork failed: {exc}"})
        else:
            if location == 0:
                os.close(w)
                _announce(request_id, sock, me, r)
                _become_location(fds, cwd, env, initial_path)
            status = _FORKED
    finally:
        os._exit(status)


def _announce(request_id: object, sock: socket.socket, middle: int, r: int) -> None:
    """In the location: lead a session of its own, wait until it is the subreaper's child
    (the middle process gone: the manager may wait for it), then tell its pid. Its own
    session first: the manager may signal the group (killpg(pid)) the moment it knows it."""
    os.setsid()
    while os.read(r, 1):  # the middle process holds the other end until it exits
        pass
    os.close(r)
    while os.getppid() == middle:  # exiting closes its files a moment before reparenting
        os.sched_yield()
    _send(sock, {"id": request_id, "pid": os.getpid()})


def _become_location(
    fds: List[int], cwd: str, env: Dict[str, str], initial_path: List[str]
) -> NoReturn:
    """In the forked location, already in its own session: descriptors, directory,
    environment; then the loader. Never returns to the server's loop."""
    status = 3  # as a loader with a bad bootstrap: a wsm fault, not the repository's
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        _place_fds(fds)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = initial_path
        importlib.invalidate_caches()
        if "time" in sys.modules:
            sys.modules["time"].tzset()  # TZ may differ from the server's
        from .main import main as loader_main

        status = 1
        loader_main()
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        try:
            os.write(2, f"wsm-forkserver: cannot start the location: {exc!r}\n".encode())
        except OSError:
            pass
    os._exit(status)


def _place_fds(fds: List[int]) -> None:
    """The received descriptors on 0, 1, 2 and STATUS_FD, inheritable as a spawned loader's
    are; every other descriptor (the server's socket above all) closed."""
    import fcntl

    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds]
    for target, fd in zip((0, 1, 2, STATUS_FD), high):
        os.dup2(fd, target)  # inheritable, as subprocess leaves them
    keep = STATUS_FD + 1
    for fd in _open_fds():
        if fd >= keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _open_fds() -> List[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return list(range(STATUS_FD + 1, 4096))


def launch_code(sdk_dir: str, fd: int) -> str:
    """The `-c` program that starts a fork server on descriptor `fd`."""
    return (
        f"import sys; sys.path.insert(0, {sdk_dir!r}); "
        f"from workspace_manager.loader.forkserver import main; main({fd})"
    )


def argv(python: str, sdk_dir: str, fd: int) -> Tuple[str, ...]:
    """The fork server's command line under `python`."""
    return (python, "-c", launch_code(sdk_dir, fd))


__all__ = ["STATUS_FD", "argv", "main", "start_vars"]

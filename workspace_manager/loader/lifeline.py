"""The lifecycle channel: notifications to the manager, and its EOF as our cue to die.

The manager holds the other end of an inherited socket. When the manager dies, even by
SIGKILL, the kernel closes its end and our blocked `recv` returns EOF: we then stop our
whole process group (everything repository code spawned), SIGTERM first, SIGKILL after ~1s.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import Any, List, Optional

from ..protocol.framing import encode_frame

KILL_GRACE = 1.0

#: Set once the manager is gone; the SIGTERM handler then leaves the killing to us.
lost = threading.Event()


def open_channel(fd: int) -> socket.socket:
    """Adopt the inherited fd; keep it out of processes repository code spawns."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock


def send(sock: Optional[socket.socket], message: Any) -> None:
    if sock is None:
        return
    try:
        sock.sendall(encode_frame(message))
    except OSError:
        pass  # the manager is gone; the watcher thread handles that


def watch(sock: socket.socket) -> threading.Thread:
    """Start the daemon thread that waits for EOF on `sock`."""
    thread = threading.Thread(target=_wait_for_eof, args=(sock,), name="wsm-lifeline", daemon=True)
    thread.start()
    return thread


def _wait_for_eof(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass  # the manager sends nothing today; ignore anything it might
    except OSError:
        pass
    stop_process_group()


def _group_members(pgid: int) -> Optional[List[int]]:
    """Live pids in process group `pgid` (zombies excluded), or None without /proc."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    members = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def stop_process_group(grace: float = KILL_GRACE) -> None:
    """SIGTERM every other member of our group, SIGKILL the group after `grace` seconds."""
    lost.set()
    # Scanning /proc releases the GIL around every open and read. If repository code keeps
    # the main thread busy (a busy loop, a stuck import), each release hands it the GIL and
    # this thread waits a whole switch interval (5 ms) to get it back: ~600 of those made
    # this take seconds. We are about to die, so take turns much faster.
    sys.setswitchinterval(1e-4)
    me = os.getpid()
    if os.getpgrp() != me:  # not started in our own session: our group is not ours to kill
        os._exit(1)
    others = _group_members(me)
    if others is None:
        try:
            os.killpg(me, signal.SIGTERM)  # our own handler ignores it (`lost` is set)
        except OSError:
            pass
    else:
        for pid in others:
            if pid != me:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        members = _group_members(me)
        if members is not None and not [pid for pid in members if pid != me]:
            break
        time.sleep(0.05)
    try:
        os.killpg(me, signal.SIGKILL)
    finally:
        os._exit(1)

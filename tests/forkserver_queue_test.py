"""The manager's queue of fork requests (supervisor/forkserver.py), against a fake server
end: at most `MAX_IN_FLIGHT` requests are sent unanswered, the next goes as an answer comes,
in order, and a request whose caller was cancelled while it waited is never sent."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import List

import pytest

from workspace_manager.supervisor import forkserver
from workspace_manager.supervisor.forkserver import ForkServer, ForkServerGone


def _requests(sock: socket.socket) -> List[dict]:
    """Every request waiting on the fake server's end now (their descriptors closed)."""
    found = []
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 8)
        except BlockingIOError:
            return found
        for fd in fds:
            os.close(fd)
        found.append(json.loads(data))


def test_requests_in_flight_are_bounded_and_a_cancelled_one_is_never_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forkserver, "MAX_IN_FLIGHT", 3)

    async def main() -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        theirs.setblocking(False)
        server = ForkServer("python", {}, "/nowhere", lambda _: None)
        server._sock = ours
        asyncio.get_running_loop().add_reader(ours, server._on_readable)

        async def fork(n: int) -> str:
            fds = list(os.pipe()) + list(os.pipe())
            try:
                await server.fork("/", {"N": str(n)}, fds)
            except ForkServerGone as exc:
                return str(exc)
            finally:
                for fd in fds:
                    os.close(fd)
            return "forked"

        tasks = [asyncio.ensure_future(fork(n)) for n in range(8)]
        await asyncio.sleep(0.05)
        first = _requests(theirs)
        assert [r["env"]["N"] for r in first] == ["0", "1", "2"]  # three in flight, no more
        tasks[3].cancel()  # waiting in the queue: never sent
        await asyncio.sleep(0.05)
        assert _requests(theirs) == []
        sent, answered = list(first), 0
        while answered < 7:
            for request in sent[answered:]:
                theirs.send(json.dumps({"id": request["id"], "error": "refused"}).encode())
            answered = len(sent)
            await asyncio.sleep(0.05)
            more = _requests(theirs)
            assert len(more) <= 3
            sent += more
        assert [r["env"]["N"] for r in sent] == ["0", "1", "2", "4", "5", "6", "7"]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], asyncio.CancelledError)
        assert [r for i, r in enumerate(results) if i != 3] == ["refused"] * 7
        assert server._in_flight == set() and not server._outbox
        asyncio.get_running_loop().remove_reader(ours)
        ours.close()
        theirs.close()

    asyncio.run(main())

"""`looplag.wait_allowing_for_lag`, the wait every heartbeat goes through: a deadline, extended
by the manager's own stalls, and never mistaken for its caller's cancel."""

from __future__ import annotations

import asyncio
import time

import pytest

from workspace_manager.supervisor import looplag


def _run(coro_factory) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        probe = looplag.LoopLag(period=0.01).start()
        try:
            await coro_factory()
        finally:
            probe.stop()

    asyncio.run(main())


def test_an_answer_in_time_is_returned() -> None:
    async def body() -> None:
        async def answer() -> str:
            await asyncio.sleep(0.01)
            return "pong"

        assert await looplag.wait_allowing_for_lag(answer(), 1.0) == "pong"

    _run(body)


def test_no_answer_times_out_and_the_wait_is_cancelled() -> None:
    async def body() -> None:
        cancelled = asyncio.Event()

        async def never() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                cancelled.set()

        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await looplag.wait_allowing_for_lag(never(), 0.1)
        assert 0.09 <= time.monotonic() - started < 5
        assert cancelled.is_set()

    _run(body)


def test_a_stall_of_the_loop_extends_the_deadline() -> None:
    async def body() -> None:
        async def answer_after_stall() -> str:
            await asyncio.sleep(0.05)
            return "pong"

        async def stall() -> None:
            await asyncio.sleep(0.02)
            time.sleep(0.4)  # the manager's own loop stops; the answer is ready after it

        staller = asyncio.ensure_future(stall())
        got = await looplag.wait_allowing_for_lag(answer_after_stall(), 0.2)
        await staller
        assert got == "pong"  # not a timeout: the stall was ours, not the answer's

    _run(body)


def test_the_callers_cancel_stays_a_cancel() -> None:
    async def body() -> None:
        waiting = asyncio.ensure_future(looplag.wait_allowing_for_lag(asyncio.sleep(60), 0.05))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    _run(body)


def test_an_error_of_the_call_is_raised_as_is() -> None:
    async def body() -> None:
        async def lost() -> None:
            raise ConnectionResetError("gone")

        with pytest.raises(ConnectionResetError):
            await looplag.wait_allowing_for_lag(lost(), 1.0)

    _run(body)

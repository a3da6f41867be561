"""What the live events cost the manager's event loop: N event streams following one run
that writes L lines (web/events.py and web/feed.py framed as web/sse.py or web/ws.py do, without sockets: a stream's writes go
to a no-op, so the figures are the manager's own work, not the kernel's or a client's).

    python bench/events_bench.py [--streams 50] [--lines 20000] [--batch 500] [--ws]

Lines are published as the storage publishes them: one committed batch of `--batch`
lines every 50 ms (storage/writer.py's LOG_BATCH_SECONDS). Prints one JSON line: the
loop's stalls while it runs (a probe asks to wake every 5 ms; p50, p99, max, in ms),
microseconds of loop time per delivered event, bytes written, overflows. A few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, Dict, List

from workspace_manager.storage.records import LogLine
from workspace_manager.web import feed
from workspace_manager.web.events import EventHub


class _Ctx:
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.api = None


async def _bench(streams: int, lines: int, batch: int, ws: bool = False) -> Dict[str, Any]:
    hub = EventHub()
    ctx = _Ctx(hub)
    written = [0]

    async def send(message: Dict[str, Any]) -> None:
        written[0] += len(message.get("body", b""))

    subs = [hub.subscribe(["run"], run_id="r") for _ in range(streams)]

    async def follow(sub: Any) -> None:
        # as web/sse.py (one write a batch) or web/ws.py (one message an event) frame them
        async for batch in feed.Feed(ctx, sub, feed.Request(None, None, None)).batches():
            for event in batch or ():
                if ws:
                    await send({"type": "websocket.send", "body": event.message().encode()})
            if batch and not ws:
                await send({"body": b"".join([event.frame() for event in batch])})

    tasks = [asyncio.ensure_future(follow(sub)) for sub in subs]
    stalls: List[float] = []

    async def probe() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(max(time.perf_counter() - before - 0.005, 0.0))

    probing = asyncio.ensure_future(probe())
    busy = 0.0
    seq = 0
    for _ in range(lines // batch):
        committed = []
        for _ in range(batch):
            seq += 1
            text = f"line {seq} " + "x" * 60
            committed.append(LogLine("r", time.time(), "stdout", text, seq=seq))
        await asyncio.sleep(0.05)
        before = time.perf_counter()
        hub.publish_logs(committed)
        await asyncio.sleep(0)  # the streams' writes run in the next loop turns
        busy += time.perf_counter() - before
    await asyncio.sleep(0.1)
    probing.cancel()
    hub.close()
    await asyncio.gather(*tasks)
    stalls.sort()
    delivered = seq * streams
    return {
        "streams": streams,
        "transport": "websocket" if ws else "sse",
        "lines": seq,
        "batch": batch,
        "loop_stall_ms": {
            "p50": round(stalls[len(stalls) // 2] * 1000, 2),
            "p99": round(stalls[len(stalls) * 99 // 100] * 1000, 2),
            "max": round(stalls[-1] * 1000, 2),
        },
        "us_per_delivered_event": round(busy / delivered * 1e6, 3) if delivered else None,
        "bytes_written": written[0],
        "overflows": hub.overflows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--ws", action="store_true", help="frame as WebSocket messages")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_bench(args.streams, args.lines, args.batch, args.ws))))


if __name__ == "__main__":
    main()

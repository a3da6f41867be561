"""What the live events cost the manager's event loop: N event streams following one run
that writes L lines (web/events.py and web/sse.py, without sockets: a stream's writes go
to a no-op, so the figures are the manager's own work, not the kernel's or a client's).

    python bench/events_bench.py [--streams 50] [--lines 20000] [--batch 500]

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
from workspace_manager.web.events import EventHub
from workspace_manager.web.sse import EventStream


class _Ctx:
    def __init__(self, hub: EventHub) -> None:
        self.hub = hub
        self.api = None


async def _bench(streams: int, lines: int, batch: int) -> Dict[str, Any]:
    hub = EventHub()
    endpoint = EventStream(_Ctx(hub))
    written = [0]

    async def send(message: Dict[str, Any]) -> None:
        written[0] += len(message.get("body", b""))

    subs = [hub.subscribe(["run"], run_id="r") for _ in range(streams)]
    tasks = [asyncio.ensure_future(endpoint._follow(send, sub, 0)) for sub in subs]
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
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_bench(args.streams, args.lines, args.batch))))


if __name__ == "__main__":
    main()

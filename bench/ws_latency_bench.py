"""Event latency, hub to client, over both transports of the live events: the real web
server (web/server.py + web/app.py, behind the guard) on its own loop in a thread, one
WebSocket client (`/api/events/ws`) and one SSE client (`/api/events`) in this process.

    python bench/ws_latency_bench.py [--events 300] [--gap 0.01] [--pages 0]

Each event is published on the server's loop with the time it was published; each client
notes when it parsed it. `--pages N` also keeps N more WebSocket clients open and reading
(other tabs). Prints one JSON line: p50, p99 and max in ms per transport. A few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from http_server_test import Harness, Views  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from workspace_manager.web.events import EventHub  # noqa: E402


def _percentiles(values: List[float]) -> Dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(values[len(values) // 2] * 1000, 2),
        "p99": round(values[min(len(values) - 1, len(values) * 99 // 100)] * 1000, 2),
        "max": round(values[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.01)
    parser.add_argument("--pages", type=int, default=0)
    args = parser.parse_args()

    hub = EventHub()
    h = Harness(Views(), context={"hub": hub})
    url = f"ws://127.0.0.1:{h.port}/api/events/ws?kinds=run"
    got: Dict[str, List[float]] = {"websocket": [], "sse": []}
    others = [connect(url).__enter__() for _ in range(args.pages)]
    sock = connect(url).__enter__()
    sse = http.client.HTTPConnection("127.0.0.1", h.port, timeout=30)
    sse.request("GET", "/api/events?kinds=run")
    resp = sse.getresponse()

    def read_ws() -> None:
        for _ in range(args.events):
            data = json.loads(sock.recv(timeout=30))["data"]
            got["websocket"].append(time.perf_counter() - data["at"])

    def read_sse() -> None:
        while len(got["sse"]) < args.events:
            line = resp.readline().decode()
            if line.startswith("data: "):
                data = json.loads(line[6:])
                got["sse"].append(time.perf_counter() - data["at"])

    def read_other(s: Any) -> None:
        for _ in range(args.events):
            s.recv(timeout=30)

    readers = [threading.Thread(target=read_ws), threading.Thread(target=read_sse)]
    readers += [threading.Thread(target=read_other, args=(s,)) for s in others]
    for t in readers:
        t.start()
    while h.run(asyncio.sleep(0, hub.subscribers)) < 2 + args.pages:
        time.sleep(0.01)

    def publish() -> None:
        hub.publish("run", {"event": "started", "run_id": "r", "at": time.perf_counter()})

    for _ in range(args.events):
        h.loop.call_soon_threadsafe(publish)
        time.sleep(args.gap)
    for t in readers:
        t.join(60)
    result = {"events": args.events, "other_pages": args.pages}
    result.update({name: _percentiles(values) for name, values in got.items()})
    print(json.dumps(result))
    sock.close()
    for s in others:
        s.close()
    sse.close()
    h.run(asyncio.sleep(0, hub.close()))
    h.close()


if __name__ == "__main__":
    main()

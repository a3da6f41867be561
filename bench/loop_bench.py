"""Issue-8 benchmark: the manager's event loop is never blocked, and `/livez` always answers.

    python bench/loop_bench.py            # about 40 s
    python bench/loop_bench.py --quick    # smaller: 300 connections, a 20 MiB frame

Three figures:

1. `/livez` under 1,000 concurrent connections: a real `wsm up --health 127.0.0.1:0` (one
   location), and 1,000 connections opened at once from one asyncio client (another process),
   each sending `GET /livez` and reading the answer. Latency from the start of the connect
   to the end of the answer; any answer other than 200 (or a reset) is counted as failed.
2. `/livez` under a slowloris of 200: 200 connections each sending one byte of a request head
   per second, while `/livez` is asked 20 times a second on fresh connections for a few seconds.
3. The manager loop's longest stall while a 60 MiB frame arrives: in this process, the
   manager's own client (`supervisor/rpc.AsyncConnection`) calls a server in a child process
   that answers with a 60 MiB frame; a loop-lag probe (`supervisor/looplag.LoopLag`, waking
   every 5 ms) on the same loop records how late the loop ran. Two answers: a job result
   (600,000 strings of 100 bytes) and a hostile one (60 million nils and a timestamp marker,
   which before this issue sent the frame to the strict pure-Python decoder). For comparison, the same frames decoded on the loop,
   as before this issue (`FrameDecoder.feed` in the read loop), with `--baseline`.

Output: a table, then one JSON line. Targets: no /livez failure under either load, /livez p99
< 1 s (Kubernetes' default probe timeout) under the slowloris (1,000 connections arriving at
once are served at the server's throughput, ~1,000 a second here: the last waits its turn);
the loop's longest stall < 1 s while a 60 MiB frame arrives. The exit status is 0
whether or not they are met; read `all_targets_met`. Everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from health_bench import Run  # noqa: E402
from measure import percentile  # noqa: E402

TARGET_LIVEZ_P99_MS = 1000.0  # Kubernetes' default probe timeoutSeconds is 1
TARGET_STALL_MS = 1000.0  # the shortest heartbeat period anyone sets


# -- /livez under load ---------------------------------------------------------------------------


async def _timed_livez(port: int) -> Tuple[float, int]:
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
        finally:
            writer.close()
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else -1
    except OSError:
        status = -2
    return time.perf_counter() - started, status


def concurrent_livez(port: int, count: int) -> Dict[str, Any]:
    async def main() -> List[Tuple[float, int]]:
        return list(await asyncio.gather(*(_timed_livez(port) for _ in range(count))))

    results = asyncio.run(main())
    return _summary([r[0] for r in results], [r[1] for r in results])


def slowloris_livez(port: int, count: int, seconds: float) -> Dict[str, Any]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    stop = threading.Event()

    def dribble() -> None:
        head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
        i = 0
        while not stop.wait(1.0):
            for n, s in enumerate(socks):
                try:
                    s.send(head[i : i + 1])
                except OSError:  # dropped: come back, as an attacker would
                    s.close()
                    try:
                        socks[n] = socket.create_connection(("127.0.0.1", port), timeout=1)
                        socks[n].setblocking(False)
                    except OSError:
                        pass
            i += 1

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    times: List[float] = []
    statuses: List[int] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t, status = asyncio.run(_timed_livez(port))
            times.append(t)
            statuses.append(status)
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
        for s in socks:
            s.close()
    return _summary(times, statuses)


def _summary(times: List[float], statuses: List[int]) -> Dict[str, Any]:
    ms = [t * 1000 for t in times]
    return {
        "requests": len(ms),
        "failed": sum(1 for s in statuses if s != 200),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


# -- the loop while a large frame arrives ----------------------------------------------------------


def serve_one_answer(kind: str, megabytes: int, fd: int) -> None:
    """Child process: accept one connection on the listening socket `fd`; answer the hello,
    then the next request with a frame of about `megabytes` MiB."""
    import msgpack

    listener = socket.socket(fileno=fd)
    conn, _ = listener.accept()
    size = megabytes * 1024 * 1024
    if kind == "result":
        payload: Any = ["x" * 100] * (size // 102)
    else:  # hostile: a timestamp marker routes the frame to the strict pure decoder
        payload = [None] * (size - 64) + [b"\xd6\xff"]
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            msg = msgpack.unpackb(buf[4 : 4 + n], raw=False)
            buf = buf[4 + n :]
            if msg[2] == "hello":
                reply = [1, msg[1], None, {"protocol": 1, "server": "bench"}]
            else:
                reply = [1, msg[1], None, payload]
            body = msgpack.packb(reply, use_bin_type=True)
            conn.sendall(struct.pack(">I", len(body)) + body)


def loop_stall(kind: str, megabytes: int, on_loop: bool) -> Dict[str, Any]:
    """The longest stall of this process's loop while the manager's client reads the frame."""
    from workspace_manager.supervisor import looplag
    from workspace_manager.supervisor.rpc import AsyncConnection

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--megabytes",
            str(megabytes),
            "--fd",
            str(listener.fileno()),
        ],
        pass_fds=(listener.fileno(),),
        stdin=subprocess.DEVNULL,
    )
    listener.close()

    async def main() -> Tuple[float, float]:
        probe = looplag.LoopLag(period=0.005).start()
        try:
            await asyncio.sleep(0.2)
            probe.longest = 0.0
            started = time.perf_counter()
            if on_loop:
                result = await _call_decoding_on_loop(port)
            else:
                conn = await AsyncConnection.open(f"tcp://127.0.0.1:{port}", "s", timeout=30)
                try:
                    result = await conn.call("get", {}, timeout=120)
                finally:
                    conn.close()
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.05)
            assert isinstance(result, list)
            return probe.longest, elapsed
        finally:
            probe.stop()

    try:
        longest, elapsed = asyncio.run(main())
    finally:
        child.kill()
        child.wait(10)
    return {"longest_stall_ms": round(longest * 1000, 1), "call_seconds": round(elapsed, 2)}


async def _call_decoding_on_loop(port: int) -> Any:
    """The pre-issue read path, for comparison: read chunks, `FrameDecoder.feed` on the loop."""
    from workspace_manager.protocol import framing

    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    try:
        writer.write(framing.encode_frame([0, 1, "hello", {"protocol": 1, "secret": "s"}]))
        writer.write(framing.encode_frame([0, 2, "get", {}]))
        decoder = framing.FrameDecoder()
        while True:
            data = await reader.read(262144)
            if not data:
                raise ConnectionError("closed")
            for obj in decoder.feed(data):
                if obj[1] == 2:
                    return obj[3]
    finally:
        writer.close()


# -- main ----------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="300 connections, a 20 MiB frame")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--megabytes", type=int, default=60, help="frame size in MiB (60)")
    p.add_argument("--connections", type=int, default=1000, help="concurrent /livez (1000)")
    p.add_argument("--slowloris", type=int, default=200, help="dribbling connections (200)")
    p.add_argument(
        "--baseline", action="store_true", help="also decode on the loop, as before (minutes)"
    )
    args = p.parse_args(argv)
    if args.serve:
        serve_one_answer(args.serve, args.megabytes, args.fd)
        return 0
    if args.quick:
        args.connections, args.megabytes = 300, 20

    figures: Dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="wsm-loop-bench-"))
    run: Optional[Run] = None
    try:
        run = Run(root, 1)
        run.wait_ready()
        concurrent_livez(run.port, 50)  # warm-up
        figures["livez_concurrent"] = concurrent_livez(run.port, args.connections)
        figures["livez_slowloris"] = slowloris_livez(run.port, args.slowloris, 5.0)
    finally:
        left = run.close() if run is not None else []
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    for kind in ("result", "hostile"):
        figures[f"frame_{kind}"] = loop_stall(kind, args.megabytes, on_loop=False)
        if args.baseline:
            figures[f"frame_{kind}_decoded_on_loop"] = loop_stall(
                kind, args.megabytes, on_loop=True
            )

    c, s = figures["livez_concurrent"], figures["livez_slowloris"]
    targets = {
        "livez_concurrent_no_failures": c["failed"] == 0,
        "livez_slowloris_p99_ms": s["p99_ms"] < TARGET_LIVEZ_P99_MS and s["failed"] == 0,
        "loop_stall_ms": all(
            figures[f"frame_{k}"]["longest_stall_ms"] < TARGET_STALL_MS
            for k in ("result", "hostile")
        ),
    }
    rows = [
        (f"/livez, {args.connections} concurrent connections", c),
        (f"/livez, slowloris of {args.slowloris}", s),
    ]
    print(f"{'figure':<48} {'requests':>8} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, f in rows:
        print(
            f"{name:<48} {f['requests']:>8} {f['failed']:>6} "
            f"{f['p50_ms']:>8} {f['p99_ms']:>8} {f['max_ms']:>8}"
        )
    print(
        f"\n{'loop while a ' + str(args.megabytes) + ' MiB frame arrives':<48} "
        f"{'longest stall ms':>17} {'call s':>8}"
    )
    for key, f in figures.items():
        if key.startswith("frame_"):
            label = key[len("frame_") :].replace("_", " ")
            print(f"{label:<48} {f['longest_stall_ms']:>17} {f['call_seconds']:>8}")
    if left:
        print(f"warning: had to kill {left}")
    print(
        json.dumps(
            {
                "figures": figures,
                "targets": targets,
                "all_targets_met": all(targets.values()),
                "frame_megabytes": args.megabytes,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

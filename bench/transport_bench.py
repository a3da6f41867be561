"""Issue-5 benchmark: `ping` p50/p99 to one location served by `wsm serve` over a Unix socket,
plain TCP and TCP+TLS (a throwaway self-signed certificate), all on loopback.

    python bench/transport_bench.py [--count N]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

import measure

from workspace_manager.protocol.client import Client

TOKEN = "bench-token"
REPO = """
from workspace_manager import job, repository
@job
def j(): ...
@repository
def r():
    return [j]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certificate(directory: Path) -> tuple:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def serve(tmp: Path, listen: str, *extra: str) -> subprocess.Popen:
    wsm = str(Path(sys.executable).parent / "wsm")
    env = measure.bench_env(
        WSM_TOKEN=TOKEN,
        WSM_RUNTIME_DIR=str(tmp / f"run-{time.time_ns()}"),
        WSM_STATE_DIR=str(tmp / "state"),
    )
    return measure.spawn(
        [
            wsm,
            "serve",
            "-f",
            str(tmp / "repo.py"),
            "--listen",
            listen,
            "--token-env",
            "WSM_TOKEN",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=str(tmp),
    )


def connect(address: str, ctx: Optional[ssl.SSLContext], deadline: float) -> Client:
    while True:
        try:
            return Client(
                address,
                TOKEN,
                ssl_context=ctx,
                server_hostname="127.0.0.1" if ctx else None,
                timeout=10,
            )
        except (OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def measure_transport(tmp: Path, kind: str, count: int, cert: tuple) -> Dict[str, float]:
    ctx = None
    extra: tuple = ()
    if kind == "unix":
        address = listen = f"unix:{tmp / 'serve.sock'}"
    else:
        address = listen = f"tcp://127.0.0.1:{free_port()}"
        if kind == "tcp+tls":
            extra = ("--tls-cert", str(cert[0]), "--tls-key", str(cert[1]))
            ctx = ssl.create_default_context(cafile=str(cert[0]))
    proc = serve(tmp, listen, *extra)
    try:
        client = connect(address, ctx, time.monotonic() + 60)
        with client:
            return measure.time_calls(lambda: client.call("ping"), count, warmup=200)
    finally:
        measure.stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    results: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wsm-transport-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "repo.py").write_text(REPO)
        cert = make_certificate(tmp)
        for kind in ("unix", "tcp", "tcp+tls"):
            results[kind] = measure_transport(tmp, kind, args.count, cert)
    print(f"{'transport':<10} {'p50 (us)':>10} {'p99 (us)':>10} {'calls/s':>10}")
    for kind, r in results.items():
        print(f"{kind:<10} {r['p50_us']:>10.1f} {r['p99_us']:>10.1f} {r['calls_per_s']:>10.0f}")
    summary = {
        kind: {k: round(v, 1) for k, v in r.items() if k in ("p50_us", "p99_us", "calls_per_s")}
        for kind, r in results.items()
    }
    summary["tls_over_unix_p50"] = round(
        results["tcp+tls"]["p50_us"] / results["unix"]["p50_us"], 2
    )
    summary["loadavg_1min"] = os.getloadavg()[0]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

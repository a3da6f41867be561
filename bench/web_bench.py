"""Issue-10 benchmark: the web page, measured over HTTP and in Debian's headless Chromium.

    python bench/web_bench.py            # 100 locations, 50 pages, /livez 500/s for 10 s
    python bench/web_bench.py --quick    # 20 locations, 10 pages, 3 s (under a minute)

What it does: writes a workspace of N trivial locations plus one, `team`, with a job that
logs time-stamped lines, starts a real `wsm up --health 127.0.0.1:0` (its own session), waits
until every location is ready, then measures:

1. the floor: `/livez` round trips on one open keep-alive socket, one after another, with
   nothing else open; and `/livez` at RATE req/s (open loop, as bench/health_bench.py) with
   nothing else open;
2. the overview (`/`) over raw HTTP, a new connection each time as a browser's first visit:
   time to its first byte, and the full load (the HTML, then every `/static/` CSS and JS it
   links, on that connection);
3. the overview in Chromium (Playwright, `executable_path=/usr/bin/chromium`): the
   navigation timing's responseStart and loadEventEnd of a fresh page;
4. event latency, from a state change to the browser, measured in the page: a `kill -9`
   of a location's process (one location per kill, a second apart) until (a) the page's
   EventSource gets the `location` event that says it is not ready and (b) the overview's row
   shows it (`data-state` != ready); and a run's log line, from the moment the job called
   `context.log` (its text carries `time.time()`) until (a) the EventSource's `log` event and
   (b) the run page's new `li`. The page's clock (performance.timeOrigin + now()) is compared
   with this process's `time.time()` by a few round trips; the offset is subtracted, and its
   uncertainty (half the best round trip) is reported;
5. `/livez` at RATE req/s again, now with P Chromium pages open and streaming (half on the
   overview, half on the page of a run that logs 5 lines a second), compared with step 1.

Steps that need a page the manager does not serve (yet) are reported as `null`. Output: a
table, then one JSON line. Percentiles are nearest-rank. Every process started is stopped at
the end (also on Ctrl-C and errors) and checked gone. Chromium is Debian's (`.ci/run`
installs it); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402
from measure import percentile  # noqa: E402

CHROMIUM = os.environ.get("WSM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

TRIVIAL = measure.TRIVIAL_WSM_REPO

TEAM = """
import time
from workspace_manager import job, repository

@job(description="logs time-stamped lines")
def stamps(context):
    time.sleep(float(context.run_config.get("delay", 0)))
    for i in range(int(context.run_config.get("lines", 50))):
        context.log.info("stamp %d %.6f", i, time.time())
        time.sleep(float(context.run_config.get("interval", 0.2)))

@repository
def team_repo():
    return [stamps]
"""

STAMP = re.compile(r"stamp (\d+) (\d+\.\d+)")


# -- the load client (a second process) ----------------------------------------------------------


def client_main(args: argparse.Namespace) -> int:
    """`/livez` at args.rate for args.duration, open loop (bench/health_bench.py's client)."""
    import health_bench

    async def go() -> Dict[str, Any]:
        await health_bench._paced(args.port, "/livez", args.rate, 0.5, args.connections)
        return await health_bench._paced(
            args.port, "/livez", args.rate, args.duration, args.connections
        )

    print(json.dumps(asyncio.run(go())), flush=True)
    return 0


def paced_livez(port: int, rate: float, duration: float, connections: int = 4) -> Dict[str, Any]:
    """Run the load client in its own process (so this one's browser driving cannot slow
    it) and return its figures."""
    limit = 60 + 6 * duration
    try:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                "--port",
                str(port),
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--connections",
                str(connections),
            ],
            capture_output=True,
            text=True,
            timeout=limit,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:  # run() killed it
        return {"error": f"not done after {limit:g} s: the server fell far behind"}
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {done.stderr.strip()[-500:]}")
    result: Dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the manager under test ----------------------------------------------------------------------


class Manager:
    """`wsm up` in its own session on N trivial locations and `team`; stopped by `close()`."""

    def __init__(self, root: Path, locations: int) -> None:
        import yaml

        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env.pop("PYTHONPATH", None)
        for name in ("RUNTIME", "STATE", "CACHE"):
            self.env[f"WSM_{name}_DIR"] = str(root / f".wsm-{name.lower()}")
        (root / "team").mkdir()
        (root / "team" / "team_repo.py").write_text(textwrap.dedent(TEAM))
        entries = [{"python_file": {"relative_path": "team/team_repo.py", "location_name": "team"}}]
        self.names = [f"loc{i:03d}" for i in range(locations)]
        for name in self.names:
            (root / name).mkdir()
            (root / name / "repo.py").write_text(textwrap.dedent(TRIVIAL))
            entries.append(
                {"python_file": {"relative_path": f"{name}/repo.py", "location_name": name}}
            )
        workspace = root / "workspace.yaml"
        workspace.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
        wsm = shutil.which("wsm", path=str(Path(sys.executable).parent)) or "wsm"
        self.proc = subprocess.Popen(
            [wsm, "up", "-w", str(workspace), "--health", "127.0.0.1:0", "--quiet-output"],
            cwd=root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.lines: List[str] = []
        self.pids: Set[int] = set()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = wait(self._health_port, 60, "the health endpoint")
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _health_port(self) -> Optional[int]:
        if self.proc.poll() is not None:
            raise RuntimeError("wsm up exited:\n" + "\n".join(self.lines[-30:]))
        for line in self.lines:
            m = re.search(r"health endpoint on http://[^:]+:(\d+)", line)
            if m:
                return int(m.group(1))
        return None

    def request(
        self, method: str, path: str, body: Optional[Dict[str, Any]] = None
    ) -> Tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def status(self) -> Dict[str, Any]:
        code, body = self.request("GET", "/status")
        return dict(json.loads(body))

    def wait_ready(self, names: Optional[List[str]] = None, timeout: float = 300) -> None:
        def ready() -> bool:
            self.track()
            locs = self.status()["locations"]
            return all(locs[n]["state"] == "ready" for n in (names or locs))

        wait(ready, timeout, "the locations to be ready")

    def launch(self, config: Dict[str, Any]) -> str:
        code, body = self.request(
            "POST", "/api/runs", {"location": "team", "job": "stamps", "run_config": config}
        )
        if code not in (200, 201):
            raise RuntimeError(f"POST /api/runs: {code} {body[:300]!r}")
        return str(json.loads(body)["run_id"])

    def cancel(self, run_id: str) -> None:
        self.request("POST", f"/api/runs/{run_id}/cancel", {})

    def track(self) -> None:
        import psutil

        try:
            self.pids.update(c.pid for c in psutil.Process(self.proc.pid).children(True))
        except psutil.Error:
            pass

    def close(self) -> List[int]:
        """SIGTERM wsm up, wait; SIGKILL anything left. Returns what had to be killed."""
        import psutil

        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
        left = []
        for pid in sorted(self.pids | {self.proc.pid}):
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
                    p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        return left


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def stats(values: List[float]) -> Optional[Dict[str, float]]:
    if not values:
        return None
    return {
        "count": len(values),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values),
    }


# -- 1. the floor --------------------------------------------------------------------------------


def raw_round_trips(port: int, count: int) -> Dict[str, float]:
    """`GET /livez` on one open socket, one after another: the least a request can cost."""
    request = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: List[float] = []
    try:
        buf = b""
        for i in range(count + 50):
            t0 = time.perf_counter()
            sock.sendall(request)
            while True:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    m = re.search(rb"content-length:\s*(\d+)", buf[:head_end], re.I)
                    total = head_end + 4 + (int(m.group(1)) if m else 0)
                    if len(buf) >= total:
                        buf = buf[total:]
                        break
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buf += chunk
            if i >= 50:  # warm-up
                samples.append((time.perf_counter() - t0) * 1000)
    finally:
        sock.close()
    return dict(stats(samples) or {})


# -- 2. the overview over raw HTTP ---------------------------------------------------------------


ASSET = re.compile(rb"""(?:href|src)=["'](/static/[^"']+)["']""")


def overview_http(port: int, count: int) -> Dict[str, Any]:
    """First byte of `/` on a new connection, and the full load (HTML + its /static/ CSS and
    JS on that connection), `count` times."""
    first: List[float] = []
    full: List[float] = []
    status = 0
    size = 0
    assets: List[str] = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/", headers={"Accept": "text/html"})
        resp = conn.getresponse()
        t_first = time.perf_counter()  # the status line and headers are in
        body = resp.read()
        status = resp.status
        size = len(body)
        assets = sorted({a.decode() for a in ASSET.findall(body)})
        for path in assets:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
        t_full = time.perf_counter()
        conn.close()
        first.append((t_first - t0) * 1000)
        full.append((t_full - t0) * 1000)
    return {
        "status": status,
        "html_bytes": size,
        "assets": assets,
        "first_byte": stats(first),
        "full_load": stats(full),
    }


# -- 3.-5. in Chromium ---------------------------------------------------------------------------


CLOCK = "() => performance.timeOrigin + performance.now()"

LISTEN = """
(run) => {
  window.__ev = [];
  const at = () => performance.timeOrigin + performance.now();
  const url = "/api/events?kinds=location" + (run ? "&run=" + encodeURIComponent(run) : "");
  const es = new EventSource(url);
  window.__es = es;
  es.onopen = () => { window.__esOpen = true; };
  es.addEventListener("location", (e) => {
    const d = JSON.parse(e.data);
    window.__ev.push({at: at(), kind: "location", name: d.name, state: d.state});
  });
  es.addEventListener("log", (e) => {
    const d = JSON.parse(e.data);
    window.__ev.push({at: at(), kind: "log", text: d.text});
  });
}
"""

WATCH_ROWS = """
() => {
  window.__rows = {};
  const seen = () => {
    for (const row of document.querySelectorAll("#locations tr[data-location]")) {
      const name = row.dataset.location;
      if (row.dataset.state !== "ready" && !(name in window.__rows))
        window.__rows[name] = performance.timeOrigin + performance.now();
    }
  };
  new MutationObserver(seen).observe(document.querySelector("#locations"),
    {attributes: true, childList: true, subtree: true});
}
"""

WATCH_LOG = """
() => {
  window.__lines = [];
  new MutationObserver((records) => {
    const at = performance.timeOrigin + performance.now();
    for (const r of records) for (const n of r.addedNodes)
      if (n.nodeType === 1) window.__lines.push({at, text: n.textContent});
  }).observe(document.querySelector("ol#log"), {childList: true, subtree: true});
}
"""


def clock_offset(page: Any) -> Tuple[float, float]:
    """(page clock - this process's time.time(), in ms; its uncertainty, half the best of
    a few round trips)."""
    best: Optional[Tuple[float, float]] = None
    for _ in range(7):
        t0 = time.time() * 1000
        there = float(page.evaluate(CLOCK))
        t1 = time.time() * 1000
        rtt = t1 - t0
        offset = there - (t0 + t1) / 2
        if best is None or rtt < best[1] * 2:
            best = (offset, rtt / 2)
    assert best is not None
    return best


def has_selector(page: Any, selector: str) -> bool:
    return bool(page.evaluate("(s) => !!document.querySelector(s)", selector))


def browser_load(page: Any, url: str, count: int) -> Dict[str, Any]:
    """responseStart and loadEventEnd of `url` in a fresh navigation, `count` times."""
    first: List[float] = []
    load: List[float] = []
    status = None
    for _ in range(count):
        page.goto("about:blank")
        resp = page.goto(url, wait_until="load")
        status = resp.status if resp is not None else None
        nav = page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0];"
            " return {first: n.responseStart - n.startTime, load: n.loadEventEnd - n.startTime}; }"
        )
        first.append(float(nav["first"]))
        load.append(float(nav["load"]))
    return {"status": status, "first_byte": stats(first), "load_event": stats(load)}


def events_supported(manager: Manager) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", manager.port, timeout=5)
    try:
        conn.request("GET", "/api/events?kinds=location")
        resp = conn.getresponse()
        return resp.status == 200 and "event-stream" in (resp.getheader("content-type") or "")
    except OSError:
        return False
    finally:
        conn.close()


def kill_latency(manager: Manager, page: Any, kills: int, dom: bool) -> Dict[str, Any]:
    """`kill -9` of `kills` locations, one a second, each until the page sees it."""
    offset, uncertainty = clock_offset(page)
    stream: List[float] = []
    rows: List[float] = []
    locs = manager.status()["locations"]
    victims = [n for n in manager.names if locs[n]["state"] == "ready"][:kills]
    for name in victims:
        killed_at = time.time() * 1000 + offset
        os.kill(int(locs[name]["pid"]), signal.SIGKILL)

        def seen(name: str = name, killed_at: float = killed_at) -> Optional[Dict[str, Any]]:
            got = page.evaluate(
                "(a) => ({ev: window.__ev.find(e => e.kind === 'location' && e.name === a[0]"
                " && e.state !== 'ready' && e.at >= a[1]) || null,"
                " row: (window.__rows || {})[a[0]] || null})",
                [name, killed_at - 5],
            )
            return got if got["ev"] and (got["row"] or not dom) else None

        try:
            got = wait(seen, 10, f"the page to show {name} killed")
        except RuntimeError:
            continue
        stream.append(got["ev"]["at"] - killed_at)
        if dom:
            rows.append(got["row"] - killed_at)
        time.sleep(1.0)
    manager.wait_ready(victims, timeout=120)
    return {
        "kills": len(victims),
        "clock_uncertainty_ms": uncertainty,
        "event_stream": stats(stream),
        "page_row": stats(rows) if dom else None,
    }


def log_latency(manager: Manager, page: Any, lines: int, dom: bool) -> Dict[str, Any]:
    """A run logging `lines` stamped lines every 0.05 s; latency of each to the page."""
    run_id = manager.launch({"lines": lines, "interval": 0.05, "delay": 3.0})
    if dom:
        page.goto(f"{manager.url}/runs/{run_id}")
        page.wait_for_function("() => document.body.dataset.live === 'open'", timeout=15_000)
        page.evaluate(WATCH_LOG)
    page.evaluate(LISTEN, run_id)
    page.wait_for_function("() => window.__esOpen === true", timeout=15_000)
    offset, uncertainty = clock_offset(page)
    wait(
        lambda: page.evaluate("window.__ev.filter(e => e.kind === 'log').length") >= lines,
        30 + lines * 0.2,
        "every line on the stream",
    )
    if dom:
        wait(lambda: page.evaluate("window.__lines.length") >= lines, 10, "every line in the page")

    def latencies(items: List[Dict[str, Any]]) -> List[float]:
        out = []
        for item in items:
            m = STAMP.search(item["text"])
            if m:
                out.append(item["at"] - offset - float(m.group(2)) * 1000)
        return out

    events = page.evaluate("window.__ev.filter(e => e.kind === 'log')")
    page.evaluate("window.__es.close()")
    return {
        "lines": lines,
        "clock_uncertainty_ms": uncertainty,
        "event_stream": stats(latencies(events)),
        "page_li": stats(latencies(page.evaluate("window.__lines"))) if dom else None,
    }


def open_pages(
    browser: Any, manager: Manager, count: int, run_id: str, pages_exist: bool
) -> List[Any]:
    """`count` pages, streaming: half on the overview, half on `run_id`'s page (or, without
    the pages, a bare document of the manager's origin with an EventSource each). Each in a
    browser context of its own, as 50 people's browsers: within one context Chromium opens at
    most 6 HTTP/1.1 connections to a host, and each open page's event stream holds one."""
    opened = []
    for i in range(count):
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        if pages_exist:
            page.goto(manager.url + ("/" if i % 2 == 0 else f"/runs/{run_id}"))
            page.wait_for_function("() => document.body.dataset.live === 'open'", timeout=30_000)
        else:
            page.goto(manager.url + "/livez")
            page.evaluate(LISTEN, run_id if i % 2 else None)
            page.wait_for_function("() => window.__esOpen === true", timeout=30_000)
        opened.append(page)
    return opened


# -- driver --------------------------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--locations", type=int, default=100, help="trivial locations (100)")
    p.add_argument("--pages", type=int, default=50, help="pages open during step 5 (50)")
    p.add_argument("--rate", type=float, default=500.0, help="/livez requests per second (500)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of /livez load (10)")
    p.add_argument("--connections", type=int, default=4, help="keep-alive connections (4)")
    p.add_argument("--loads", type=int, default=200, help="overview loads over HTTP (200)")
    p.add_argument("--browser-loads", type=int, default=30, help="overview loads in Chromium")
    p.add_argument("--kills", type=int, default=10, help="locations killed, one a second (10)")
    p.add_argument("--lines", type=int, default=200, help="log lines timed (200)")
    p.add_argument("--quick", action="store_true", help="20 locations, 10 pages, 3 s")
    args = p.parse_args(argv)
    if args.client:
        return client_main(args)
    if args.quick:
        args.locations, args.pages, args.duration = 20, 10, 3.0
        args.loads, args.browser_loads, args.kills, args.lines = 50, 10, 5, 60

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    root = Path(tempfile.mkdtemp(prefix="wsm-web-bench-"))
    manager: Optional[Manager] = None
    results: Dict[str, Any] = {}
    killed: List[int] = []
    try:
        t0 = time.monotonic()
        manager = Manager(root, args.locations)
        manager.wait_ready()
        results["startup_s"] = time.monotonic() - t0
        results["floor_round_trip"] = raw_round_trips(manager.port, 2000)
        results["livez_alone"] = paced_livez(
            manager.port, args.rate, args.duration, args.connections
        )
        results["overview_http"] = overview_http(manager.port, args.loads)
        results.update(in_chromium(manager, args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if manager is not None:
            killed = manager.close()
        shutil.rmtree(root, ignore_errors=True)
    report(args, results, killed)
    return 0


def in_chromium(manager: Manager, args: argparse.Namespace) -> Dict[str, Any]:
    """Steps 3 to 5; {} (with the reason) without Chromium or Playwright."""
    if not os.access(CHROMIUM, os.X_OK):
        return {"chromium": f"no Chromium at {CHROMIUM}"}
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"chromium": "playwright is not installed"}
    out: Dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            out["chromium"] = browser.version
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            out["overview_chromium"] = browser_load(page, manager.url + "/", args.browser_loads)
            pages_exist = out["overview_chromium"]["status"] == 200 and has_selector(
                page, "#locations"
            )
            out["pages"] = pages_exist
            if not events_supported(manager):
                out["events"] = "no /api/events"
                return out
            if pages_exist:
                page.goto(manager.url + "/")
                page.wait_for_function(
                    "() => document.body.dataset.live === 'open'", timeout=15_000
                )
                page.evaluate(WATCH_ROWS)
            else:
                page.goto(manager.url + "/livez")
            page.evaluate(LISTEN, None)
            page.wait_for_function("() => window.__esOpen === true", timeout=15_000)
            out["kill_latency"] = kill_latency(manager, page, args.kills, pages_exist)
            page.evaluate("window.__es.close()")
            out["log_latency"] = log_latency(manager, page, args.lines, pages_exist)
            page.close()

            run_id = manager.launch({"lines": 100_000, "interval": 0.2})
            t0 = time.monotonic()
            opened = open_pages(browser, manager, args.pages, run_id, pages_exist)
            out["pages_open_s"] = time.monotonic() - t0
            out["livez_with_pages"] = paced_livez(
                manager.port, args.rate, args.duration, args.connections
            )
            out["pages_open"] = len(opened)
            manager.cancel(run_id)
            for p in opened:
                p.context.close()
            context.close()
        finally:
            browser.close()
    return out


def _row(name: str, s: Optional[Dict[str, Any]]) -> Tuple[str, str, str, str]:
    if not s:
        return (name, "-", "-", "-")
    return (name, f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['max_ms']:.2f}")


def _paced_stats(r: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if r and r.get("error"):
        print(f"note: /livez load: {r['error']}")
    if not r or r.get("p50_ms") is None:
        return None
    return {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "max_ms": r["max_ms"]}


def report(args: argparse.Namespace, results: Dict[str, Any], killed: List[int]) -> None:
    get = results.get
    print(
        f"wsm up with {args.locations} trivial locations + team; Chromium {get('chromium')}; "
        f"pages served: {get('pages')}; load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    ohttp = get("overview_http") or {}
    ochr = get("overview_chromium") or {}
    kills = get("kill_latency") or {}
    logs = get("log_latency") or {}
    rows = [
        ("figure", "p50 ms", "p99 ms", "max ms"),
        _row("floor: /livez round trip, one socket", get("floor_round_trip")),
        _row(f"/livez {args.rate:g}/s, nothing open", _paced_stats(get("livez_alone"))),
        _row(
            f"/livez {args.rate:g}/s, {get('pages_open', 0)} pages streaming",
            _paced_stats(get("livez_with_pages")),
        ),
        _row(f"overview first byte (HTTP, status {ohttp.get('status')})", ohttp.get("first_byte")),
        _row(f"overview HTML+CSS+JS {ohttp.get('assets')}", ohttp.get("full_load")),
        _row("overview first byte (Chromium)", ochr.get("first_byte")),
        _row("overview load event (Chromium)", ochr.get("load_event")),
        _row("kill -9 -> EventSource event", kills.get("event_stream")),
        _row("kill -9 -> overview row not ready", kills.get("page_row")),
        _row("log line -> EventSource event", logs.get("event_stream")),
        _row("log line -> run page li", logs.get("page_li")),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    floor = (get("floor_round_trip") or {}).get("p99_ms")
    loaded = (_paced_stats(get("livez_with_pages")) or {}).get("p99_ms")
    alone = (_paced_stats(get("livez_alone")) or {}).get("p99_ms")
    if floor and loaded:
        print(
            f"/livez p99 with pages open: {loaded:.2f} ms = {loaded / floor:.1f}x the floor's "
            f"p99 ({floor:.2f} ms); alone at the same rate {alone:.2f} ms"
        )
    for what in ("events", "chromium"):
        if isinstance(get(what), str) and what == "events":
            print(f"note: {get(what)}")
    if killed:
        print(f"warning: {len(killed)} processes had to be killed at the end: {killed}")
    summary = {
        "bench": "web",
        "locations": args.locations,
        "rate": args.rate,
        "duration_s": args.duration,
        "pages": args.pages,
        "results": results,
        "livez_p99_over_floor": (loaded / floor) if floor and loaded else None,
        "left_behind": killed,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())

"""The `location` events around a reload whose new code fails to load (SPEC section 3: the
previous process still serves): a tester saw the page's live row say "Uptime 1 ms" then.
Each `ready` event must carry the serving process (its pid) and its true uptime. On this
code a failed reload publishes no `location` event at all (no state changes), so the row
keeps what it showed; this test guards that no event of a new process's uptime appears."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any, Dict, List

from cli_reload_test import BROKEN_EDITS, edit, two_locations
from e2e import WorkspaceDir, WsmUp


def follow_events(port: int, out: List[Dict[str, Any]], stop: threading.Event) -> None:
    """Read `GET /api/events` (SSE) into `out` until `stop` is set."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/api/events?kinds=location")
    resp = conn.getresponse()
    kind = None
    while not stop.is_set():
        line = resp.fp.readline().decode()
        if not line:
            break
        if line.startswith("event: "):
            kind = line[7:].strip()
        elif line.startswith("data: ") and kind == "location":
            out.append(json.loads(line[6:]))
    conn.close()


def test_a_failed_reload_keeps_the_serving_processs_uptime_in_its_event(ws: WorkspaceDir) -> None:
    path = two_locations(ws)
    with WsmUp(ws, "-w", str(path)) as up:
        first = up.wait_all_settled()["locations"]
        assert up.port is not None
        events: List[Dict[str, Any]] = []
        stop = threading.Event()
        reader = threading.Thread(target=follow_events, args=(up.port, events, stop), daemon=True)
        reader.start()
        time.sleep(1.5)  # the serving process is up for a while: its uptime is not ~0
        edit(ws.root / "alpha/repo.py", BROKEN_EDITS["raises"])
        res = ws.run("reload", "-w", str(path), "alpha")
        assert res.returncode == 1, res.stdout + res.stderr
        time.sleep(1.0)
        stop.set()
        alpha = [e for e in events if e["name"] == "alpha"]
        print(
            "\nlocation events of alpha:",
            [(e["state"], e["pid"], e["uptime_seconds"]) for e in alpha],
        )
        for e in alpha:
            if e["state"] == "ready":
                assert e["pid"] == first["alpha"]["pid"], e
                assert e["uptime_seconds"] is not None and e["uptime_seconds"] >= 1.0, e
        assert up.location("alpha")["pid"] == first["alpha"]["pid"]

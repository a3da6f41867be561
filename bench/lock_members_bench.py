"""Issue-12 benchmark: N members of one uv workspace, one shared uv.lock (envs/lockpart.py).

    python bench/lock_members_bench.py              # 20 members (about half a minute)
    python bench/lock_members_bench.py --members 5

Figures:
- deciding reuse for the N member environments in a fresh process (workspace load, then
  `EnvironmentService.lookup` for each: the lock is read and parsed once for all members),
  median of 5; the target is 50 ms;
- after member 0 gains a dependency and the lock is re-made: how many of the N keys changed
  (each member's key holds only its part of the lock: 1 expected, N before the fix), and
  deciding reuse again;
- the members' parts of their lock (envs/lockpart.py) in a fresh process: the first member
  (read and parse) and the others (read, hash, walk); the same for a large lock (2,000
  entries with hashes, ~1 MiB, 20 members), parsed, and read from the parts a first start
  kept (a warm start); against `uv export --frozen --package` for one
  member of the real lock (the other way to get a member's part: a uv process per member
  on every warm start).

Offline: the wheels are written by locks_bench's helpers, uv runs with UV_OFFLINE=1.
Output: a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional

from locks_bench import (
    DECIDE,
    TARGET_DECIDE_MS,
    build_all,
    make_wheel,
    median_probe,
    project,
    uv_lock,
)
from locks_bench import workspace_yaml as locations_yaml

from workspace_manager.envs.installers.uv import find_uv
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.load import load_workspace

SHARED = 5

PARTS = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from workspace_manager.envs.lockpart import project_part
lock, store = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] else None)
members = [Path(m) for m in sys.argv[3:]]
t1 = time.perf_counter()
project_part(lock, members[0], store)
t2 = time.perf_counter()
for member in members[1:]:
    project_part(lock, member, store)
t3 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3,
                  "next_ms": (t3 - t2) * 1e3}))
"""


def parts(lock: Path, members: List[Path], store: Optional[Path] = None) -> Dict[str, float]:
    """project_part for every member in a fresh process, median of 5 by the first's cost;
    with ``store`` (the cache's lock-parts, filled by a first run), as a warm start reads them;
    without, as a start that meets the lock's content for the first time (a TOML parse)."""
    if store is not None:
        subprocess.run(
            [sys.executable, "-c", PARTS, str(lock), str(store), *map(str, members)], check=True,
            capture_output=True,
        )  # fmt: skip
    argv = [sys.executable, "-c", PARTS, str(lock), str(store or ""), *map(str, members)]
    return median_probe(argv, "first_ms")


def decide(path: Path, cache: Path) -> Dict[str, float]:
    return median_probe([sys.executable, "-c", DECIDE, str(path), str(cache)], "decide_ms")


def keys(path: Path, cache: Path) -> Dict[str, str]:
    svc = EnvironmentService(cache)
    try:
        return {loc.name: svc.lookup(loc)[1] for loc in load_workspace(path).locations}
    finally:
        svc.close()


def large_lock(path: Path) -> None:
    """A lock of 2,000 registry entries, each with a wheel and an sdist hash, and 20 members."""
    digest = "0" * 64
    blocks = ['version = 1\nrevision = 3\nrequires-python = ">=3.9"\n']
    for i in range(2000):
        blocks.append(
            textwrap.dedent(
                f"""\
                [[package]]
                name = "p{i}"
                version = "1.0"
                source = {{ registry = "https://example.invalid/simple" }}
                dependencies = [
                    {{ name = "p{(i * 7 + 1) % 2000}" }},
                    {{ name = "p{(i * 13 + 5) % 2000}" }},
                ]
                sdist = {{ url = "https://example.invalid/p{i}-1.0.tar.gz", hash = "sha256:{digest}", size = 1000 }}
                wheels = [
                    {{ url = "https://example.invalid/p{i}-1.0-py3-none-any.whl", hash = "sha256:{digest}", size = 1000 }},
                ]
                """
            )
        )
    for m in range(20):
        blocks.append(
            f'[[package]]\nname = "m{m}"\nversion = "0"\nsource = {{ virtual = "m{m}" }}\n'
            f'dependencies = [\n    {{ name = "p{m * 97}" }},\n]\n'
        )
    path.write_text("\n".join(blocks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    args = parser.parse_args()
    uv = find_uv()
    if uv is None:
        print("lock_members_bench: uv is not installed beside wsm", file=sys.stderr)
        return 2
    n = args.members
    results: Dict[str, object] = {"members": n}
    with tempfile.TemporaryDirectory(prefix="wsm-members-bench-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, UV_OFFLINE="1", UV_NO_PROGRESS="1", UV_CACHE_DIR=str(root / "lc"))
        os.environ.update(UV_OFFLINE="1", UV_NO_PROGRESS="1")
        os.environ.pop("UV_CACHE_DIR", None)
        wheels = root / "wheels"
        wheels.mkdir()
        shared = {f"pkg{i:02d}": make_wheel(wheels, f"pkg{i:02d}") for i in range(SHARED)}
        mono = root / "mono"
        mono.mkdir()
        (mono / "pyproject.toml").write_text(
            '[project]\nname = "mono"\nversion = "0"\nrequires-python = ">=3.9"\n\n'
            '[tool.uv.workspace]\nmembers = ["members/*"]\n'
        )
        locations = []
        for i in range(n):
            own = make_wheel(wheels, f"own{i:02d}")
            project(
                mono / "members" / f"m{i:02d}",
                f"m{i:02d}",
                dict(shared, **{own.stem.split("-")[0]: own}),
            )
            locations.append((f"m{i:02d}", f"mono/members/m{i:02d}", {"project": "."}))
        uv_lock(uv, mono, env)
        path = locations_yaml(root, locations)
        cache = root / "cache"
        seconds, _ = build_all(path, cache)
        results["build_seconds"] = round(seconds, 2)
        results["decide"] = decide(path, cache)
        before = keys(path, cache)

        # member 0 gains a dependency; the lock is re-made for it
        extra = make_wheel(wheels, "extra00")
        m0 = mono / "members" / "m00"
        deps = dict(shared, own00=wheels / "own00-1.0-py3-none-any.whl", extra00=extra)
        for f in m0.iterdir():
            f.unlink()
        m0.rmdir()
        project(m0, "m00", deps)
        uv_lock(uv, mono, env)
        after = keys(path, cache)
        results["changed_keys"] = sorted(k for k in before if before[k] != after[k])
        results["decide_after_relock"] = decide(path, cache)

        started = time.perf_counter()
        subprocess.run(
            [uv, "export", "--frozen", "--package", "m01", "--no-header"],
            cwd=mono,
            env=env,
            check=True,
            capture_output=True,
        )
        results["uv_export_one_member_ms"] = round((time.perf_counter() - started) * 1e3, 1)

        big = root / "big" / "uv.lock"
        big.parent.mkdir()
        large_lock(big)
        results["large_lock_bytes"] = big.stat().st_size
        big_members = [big.parent / f"m{m}" for m in range(20)]
        results["large_lock"] = parts(big, big_members)
        results["large_lock_warm"] = parts(big, big_members, root / "lock-parts")
        results["own_lock"] = parts(
            mono / "uv.lock", [mono / "members" / f"m{i:02d}" for i in range(n)]
        )

    d, a = results["decide"], results["decide_after_relock"]
    assert isinstance(d, dict) and isinstance(a, dict)
    big_parts = results["large_lock"]
    assert isinstance(big_parts, dict)
    print(f"{n} members of one uv workspace: built in {results['build_seconds']} s")
    print(
        f"deciding reuse for {n} members: {d['decide_ms']:.1f} ms ({d['hits']} hits; workspace "
        f"load {d['load_ms']:.1f} ms; target {TARGET_DECIDE_MS:g} ms)"
    )
    print(
        f"member m00 re-locked with a new dependency: keys changed {results['changed_keys']}; "
        f"deciding reuse {a['decide_ms']:.1f} ms ({a['hits']} hits)"
    )
    own = results["own_lock"]
    assert isinstance(own, dict)
    print(
        f"the {n} members' parts of their lock, fresh process: first {own['first_ms']:.2f} ms "
        f"(read and parse), the other {n - 1} {own['next_ms']:.2f} ms"
    )
    print(
        f"a lock of 2,000 entries ({results['large_lock_bytes'] / 1024:.0f} KiB), fresh process: "
        f"first member {big_parts['first_ms']:.1f} ms (read and parse), next 19 "
        f"{big_parts['next_ms']:.1f} ms; `uv export --package` for one member: "
        f"{results['uv_export_one_member_ms']} ms"
    )
    warm = results["large_lock_warm"]
    assert isinstance(warm, dict)
    print(
        f"the same, a warm start (the parts read from the cache's lock-parts): first member "
        f"{warm['first_ms']:.1f} ms, next 19 {warm['next_ms']:.1f} ms"
    )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue-12 benchmark: environments from a project's lock.

    python bench/locks_bench.py             # everything (about a minute on 2 busy cores)
    python bench/locks_bench.py --envs 5    # fewer locked environments for the sharing figure

Figures:
- cold build of a locked environment of 20 packages from a local wheelhouse: with uv
  (`uv.lock`, `uv sync --locked`) and with pip (the same 20 pinned with hashes in a
  requirements file): seconds, and disk (apparent size; blocks of the files the env does not
  share with uv's cache);
- N locations on N locked environments (each lock: the 20 shared packages + one of its own):
  disk used by all of them together (each inode once, uv's cache included) against the sum of
  their sizes;
- deciding reuse for the N locked environments in a fresh process: workspace load plus
  `EnvironmentService.lookup` for every location (target: at most 50 ms);
- `wsm env list --json` on those N environments (a whole process, disk use measured as
  envs/usage.py does), and with `--no-size`.

Offline: the wheels are written here (each ~64 KiB of module source), uv runs with UV_OFFLINE=1.
Output: a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

from workspace_manager.envs.installers.uv import find_uv
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.envs.store import dir_size
from workspace_manager.envs.usage import measure
from workspace_manager.workspace.load import load_workspace

PACKAGES = 20
TARGET_DECIDE_MS = 50.0


def make_wheel(dest: Path, name: str) -> Path:
    """A pure-Python wheel of ~64 KiB (PEP 427: a zip with a dist-info), made without a backend."""
    dist = f"{name}-1.0.dist-info"
    body = f'VALUE = "{name}"\n' + "".join(f"X{i} = {'x' * 60!r}\n" for i in range(950))
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = dest / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


def project(folder: Path, name: str, wheels: Dict[str, Path]) -> Path:
    folder.mkdir(parents=True)
    sources = "".join(
        f'{dist} = {{ path = "{os.path.relpath(w, folder)}" }}\n' for dist, w in wheels.items()
    )
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [project]
            name = "{name}"
            version = "0"
            requires-python = ">=3.9"
            dependencies = {json.dumps(sorted(wheels))}
            """
        )
        + "[tool.uv.sources]\n"
        + sources
    )
    (folder / "repo.py").write_text("")
    return folder


def uv_lock(uv: str, folder: Path, env: Dict[str, str]) -> None:
    subprocess.run(
        [uv, "lock", "--python", sys.executable],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
    )


def workspace_yaml(root: Path, locations: List[Tuple[str, str, Dict[str, object]]]) -> Path:
    lines = ["load_from:"]
    for name, workdir, environment in locations:
        lines += [
            "  - python_file:",
            f"      relative_path: {workdir}/repo.py",
            f"      location_name: {name}",
            f"      working_directory: {workdir}",
            f"      environment: {json.dumps(environment)}",
        ]
    path = root / "workspace.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def build_all(path: Path, cache: Path) -> Tuple[float, Dict[str, str]]:
    """Build every location's env (2 at a time, as on this machine); seconds, location -> key."""
    ws = load_workspace(path)
    svc = EnvironmentService(cache, max_parallel=2)

    async def go() -> List[str]:
        done = await asyncio.gather(*(svc.ensure(loc) for loc in ws.locations))
        return [d.key for d in done]

    started = time.perf_counter()
    try:
        keys = asyncio.run(go())
    finally:
        svc.close()
    return time.perf_counter() - started, {loc.name: k for loc, k in zip(ws.locations, keys)}


def median_probe(argv: List[str], by: str, runs: int = 5) -> Dict[str, Any]:
    """Run ``argv`` (a probe printing one JSON object) ``runs`` times, each a fresh process;
    the run whose ``by`` figure is the median."""
    found = []
    for _ in range(runs):
        out = subprocess.run(argv, capture_output=True, text=True, check=True)
        found.append(json.loads(out.stdout))
    found.sort(key=lambda r: r[by])
    return found[len(found) // 2]


DECIDE = """
import json, sys, time
t0 = time.perf_counter()
from workspace_manager.envs.service import EnvironmentService
from workspace_manager.workspace.load import load_workspace
ws = load_workspace(sys.argv[1])
t1 = time.perf_counter()
svc = EnvironmentService(sys.argv[2])
found = [svc.lookup(loc)[0] is not None for loc in ws.locations]
t2 = time.perf_counter()
svc.close()
print(json.dumps({"load_ms": (t1 - t0) * 1e3, "decide_ms": (t2 - t1) * 1e3, "hits": sum(found)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=20, help="locked environments to share")
    args = parser.parse_args()
    uv = find_uv()
    if uv is None:
        print("locks_bench: uv is not installed beside wsm (pip install uv)", file=sys.stderr)
        return 2
    results: Dict[str, object] = {"packages": PACKAGES, "envs": args.envs}
    with tempfile.TemporaryDirectory(prefix="wsm-locks-bench-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, UV_OFFLINE="1", UV_NO_PROGRESS="1")
        env.pop("UV_CACHE_DIR", None)
        os.environ.update(UV_OFFLINE="1", UV_NO_PROGRESS="1")
        os.environ.pop("UV_CACHE_DIR", None)
        wheels_dir = root / "wheels"
        wheels_dir.mkdir()
        shared = {f"pkg{i:02d}": make_wheel(wheels_dir, f"pkg{i:02d}") for i in range(PACKAGES)}
        own = {f"own{i:02d}": make_wheel(wheels_dir, f"own{i:02d}") for i in range(args.envs)}

        # 1. one cold build of 20 locked packages: uv.lock with uv, hashed requirements with pip
        one = project(root / "one", "one", shared)
        uv_lock(uv, one, dict(env, UV_CACHE_DIR=str(root / "lock-cache")))
        req = root / "pip" / "requirements.txt"
        req.parent.mkdir()
        (req.parent / "repo.py").write_text("")
        req.write_text(
            "".join(
                f"{d}==1.0 --hash=sha256:{hashlib.sha256(w.read_bytes()).hexdigest()}\n"
                for d, w in shared.items()
            )
        )
        cold = {}
        for label, workdir, environment in (
            ("uv", "one", {"project": "."}),
            (
                "pip",
                "pip",
                {
                    "requirements_file": "pip/requirements.txt",
                    "pip_args": ["--no-index", "--find-links", str(wheels_dir)],
                },
            ),
        ):
            cache = root / f"cache-{label}"
            path = workspace_yaml(root, [(label, workdir, environment)])
            seconds, keys = build_all(path, cache)
            env_dir = (cache / "envs" / keys[label]).resolve()
            cold[label] = {
                "seconds": round(seconds, 2),
                "apparent_bytes": dir_size(env_dir),
                "own_blocks_bytes": measure({label: env_dir}).envs[label].own_bytes,
            }
        results["cold_build"] = cold

        # 2. N locations on N locked environments sharing one cache
        locations = []
        for i in range(args.envs):
            deps = dict(shared, **{f"own{i:02d}": own[f"own{i:02d}"]})
            folder = project(root / "teams" / f"t{i:02d}", f"t{i:02d}", deps)
            uv_lock(uv, folder, dict(env, UV_CACHE_DIR=str(root / "lock-cache")))
            locations.append((f"t{i:02d}", f"teams/t{i:02d}", {"project": "."}))
        path = workspace_yaml(root, locations)
        cache = root / "cache-shared"
        seconds, keys = build_all(path, cache)
        envs = [(cache / "envs" / k).resolve() for k in keys.values()]
        # every inode once, uv's cache included (envs/usage.py's rules)
        total_blocks = measure({**{str(e): e for e in envs}, "uv cache": cache / "uv"}).total_bytes
        sizes = sum(dir_size(e) for e in envs)
        results["shared"] = {
            "build_seconds": round(seconds, 2),
            "sum_of_sizes_bytes": sizes,
            "disk_used_bytes": total_blocks,
            "ratio": round(total_blocks / sizes, 3) if sizes else None,
        }

        # 3. deciding reuse in a fresh process, median of 5
        mid = median_probe([sys.executable, "-c", DECIDE, str(path), str(cache)], "decide_ms")
        results["decide"] = {
            "decide_ms": round(mid["decide_ms"], 1),
            "load_ms": round(mid["load_ms"], 1),
            "hits": mid["hits"],
            "target_ms": TARGET_DECIDE_MS,
        }

        # 4. `wsm env list` on the N envs, in a fresh process: with disk use, and without
        runs_list: Dict[str, List[float]] = {"measured": [], "no_size": []}
        wsm = [sys.executable, "-m", "workspace_manager.cli.main", "env", "list", "--json"]
        list_env = dict(os.environ, WSM_CACHE_DIR=str(cache))
        for _ in range(5):
            for label, extra in (("measured", []), ("no_size", ["--no-size"])):
                started = time.perf_counter()
                out = subprocess.run(
                    wsm + extra, env=list_env, capture_output=True, text=True, check=True
                )
                runs_list[label].append((time.perf_counter() - started) * 1e3)
                listed = json.loads(out.stdout)
        results["env_list"] = {
            "envs": len(listed),
            "ms": round(sorted(runs_list["measured"])[2], 1),
            "no_size_ms": round(sorted(runs_list["no_size"])[2], 1),
        }

    mib = 1024 * 1024
    for label, c in cold.items():
        print(
            f"cold build, {PACKAGES} locked packages, {label:3}: {c['seconds']:6.2f} s, "
            f"{c['apparent_bytes'] / mib:6.1f} MiB apparent, "
            f"{c['own_blocks_bytes'] / mib:6.1f} MiB not shared"
        )
    s = results["shared"]
    assert isinstance(s, dict)
    print(
        f"{args.envs} locked envs: built in {s['build_seconds']} s; disk used "
        f"{s['disk_used_bytes'] / mib:.1f} MiB (uv cache included) against a sum of sizes of "
        f"{s['sum_of_sizes_bytes'] / mib:.1f} MiB (x{s['ratio']})"
    )
    d = results["decide"]
    assert isinstance(d, dict)
    print(
        f"deciding reuse for {args.envs} locked envs: {d['decide_ms']} ms "
        f"({d['hits']} hits; workspace load {d['load_ms']} ms; target {TARGET_DECIDE_MS:g} ms)"
    )
    e = results["env_list"]
    assert isinstance(e, dict)
    print(
        f"wsm env list --json on {e['envs']} envs (a process, median of 5): {e['ms']} ms, "
        f"{e['no_size_ms']} ms with --no-size"
    )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

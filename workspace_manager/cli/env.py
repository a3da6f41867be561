"""`wsm env list | build | prune`: the environment cache, without starting any location."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from workspace_manager.cli import targets
from workspace_manager.units import binary_size

if TYPE_CHECKING:
    from workspace_manager.envs.paths import CacheLayout
    from workspace_manager.envs.store import EnvEntry
    from workspace_manager.envs.usage import CacheUsage

EXIT_FAILED = 1


def add_parser(sub) -> None:
    p = sub.add_parser("env", help="the environment cache: list, build, prune")
    envsub = p.add_subparsers(dest="env_command", metavar="SUBCOMMAND")
    envsub.required = True

    ls = envsub.add_parser("list", help="cached environments, their size and users")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument(
        "--no-size", action="store_true", help="do not measure disk use (one stat per file)"
    )

    build = envsub.add_parser("build", help="build (or reuse) environments without starting")
    targets.add_target_args(build)  # it loads the code: -f and -m are files to load
    build.add_argument("locations", nargs="*", metavar="LOCATION", help="default: all")

    prune = envsub.add_parser(
        "prune", help="remove environments no given workspace uses, or unused for N days"
    )
    prune.add_argument(
        "-w",
        "--workspace",
        metavar="FILE",
        action="append",
        default=[],
        help="keep the envs this workspace uses (repeatable)",
    )
    prune.add_argument("--unused-days", type=float, metavar="N", help="remove envs unused N days")
    prune.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "build": _build, "prune": _prune}[args.env_command](args)


def _service(reporter=None, identity=None):
    from workspace_manager.envs.service import EnvironmentService

    return EnvironmentService(reporter=reporter, identity=identity)


# ---- list ------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    """Each cached env: its source, interpreter, disk use (envs/usage.py says what "shared"
    means) and the locations that use it, running or not. Reads only, so it works on a
    read-only cache."""
    from workspace_manager.envs import store
    from workspace_manager.envs.inuse import running_uses
    from workspace_manager.envs.paths import CacheLayout

    layout = CacheLayout.at()
    running = set(running_uses())
    entries = list(store.entries(layout))
    usage = None
    if not args.no_size:
        from workspace_manager.envs.usage import measure

        usage = measure({e.key: layout.env(e.key) for e in entries})
    rows = [_row(layout, entry, running, usage) for entry in entries]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not rows:
        print(f"no environments in {layout.envs}")
        return 0
    table = [("KEY", "SOURCE", "PYTHON", "SIZE", "SHARED", "LAST USED", "USED BY")]
    for row in rows:
        table.append(
            (
                row["key"] + ("" if row["complete"] else " (incomplete)"),
                _describe_source(row["source"]),
                f"{row['python'] or '?'} {row['interpreter'] or ''}".strip(),
                _size(row["size_bytes"]),
                _shared(row["size_bytes"], row["shared_bytes"]),
                _ago(row["last_used"]),
                "; ".join(_describe_user(u) for u in row["used_by"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if usage is not None:
        n = len(rows)
        print(
            f"{n} environment{'s' if n != 1 else ''}: {binary_size(usage.total_bytes)} on disk "
            f"together (each file once, uv's cache not counted), against a sum of sizes of "
            f"{binary_size(usage.sum_bytes)}"
        )
    return 0


def _row(
    layout: CacheLayout,
    entry: EnvEntry,
    running: Set[Tuple[str, Optional[str], str]],
    usage: Optional[CacheUsage],
) -> Dict[str, Any]:
    marker = entry.marker
    interp = marker.get("interpreter")
    interp = interp if isinstance(interp, dict) else {}
    measured = usage.envs.get(entry.key) if usage is not None else None
    used_by = []
    for workspace, location, at in entry.uses:
        # an older manager listed only its keys, not which location had which
        on = (workspace, location, entry.key) in running or (workspace, None, entry.key) in running
        used_by.append(
            {"workspace": workspace, "location": location, "last_used": at or None, "running": on}
        )
    # a manager on a read-only cache cannot record its users there: it still says what it runs
    recorded = {(u["workspace"], u["location"]) for u in used_by}
    for identity, name, key in sorted(running, key=str):
        if key == entry.key and name is not None and (identity, name) not in recorded:
            used_by.append(
                {"workspace": identity, "location": name, "last_used": None, "running": True}
            )
    return {
        "key": entry.key,
        "complete": entry.complete,
        "path": str(layout.env(entry.key)),
        "source": entry.source,
        "python": interp.get("version"),
        "interpreter": interp.get("path"),
        "implementation": interp.get("implementation"),
        "requirements": list(marker.get("requirements") or []),
        "installer": marker.get("installer"),
        "size_bytes": measured.size_bytes if measured else None,
        "shared_bytes": measured.shared_bytes if measured else None,
        "own_bytes": measured.own_bytes if measured else None,
        "shared_with": list(measured.shared_with) if measured else [],
        "created": marker.get("created"),
        "last_used": entry.last_used or None,
        "used_by": used_by,
        "in_use": any(key == entry.key for _w, _l, key in running),
    }


# ---- build -----------------------------------------------------------------------------------


def _build(args: argparse.Namespace) -> int:
    import asyncio

    from workspace_manager.envs.progress import console_reporter

    workspace, identity = targets.load(args)
    chosen = list(workspace.locations)
    if args.locations:
        known = {loc.name for loc in workspace.locations}
        unknown = [name for name in args.locations if name not in known]
        if unknown:
            targets.fail(f"no location named {', '.join(unknown)} in {targets.describe(args)}")
        chosen = [workspace.location(name) for name in args.locations]
    with_env = [loc for loc in chosen if loc.environment is not None]
    for loc in chosen:
        if loc.environment is None:
            print(f"{loc.name}: no environment to build")
    service = _service(console_reporter(sys.stderr), identity)
    try:
        results = asyncio.run(_ensure_all(service, with_env))
    finally:
        service.close()
    failed = 0
    for loc, result in zip(with_env, results):
        if isinstance(result, BaseException):
            failed += 1
            print(f"wsm: {loc.name}: {result}", file=sys.stderr)
            continue
        service.mark_used(result.key, identity, loc.name)
        what = f"built in {result.seconds:.1f}s" if result.built else "reused"
        print(f"{loc.name}: env {result.key} {what} ({result.python})")
    return EXIT_FAILED if failed else 0


async def _ensure_all(service, locations) -> list:
    import asyncio

    return await asyncio.gather(*(service.ensure(loc) for loc in locations), return_exceptions=True)


# ---- prune -----------------------------------------------------------------------------------


def _prune(args: argparse.Namespace) -> int:
    from workspace_manager.envs import store
    from workspace_manager.envs.inuse import in_use_keys
    from workspace_manager.envs.lock import try_lock
    from workspace_manager.envs.usage import measure

    workspaces: List[str] = list(args.workspace)
    if not workspaces and args.unused_days is None:
        if not os.path.exists(targets.DEFAULT_WORKSPACE):
            targets.fail("give -w FILE (keep what it uses) and/or --unused-days N")
        workspaces = [targets.DEFAULT_WORKSPACE]
    service = _service()
    keep = _workspace_keys(service, workspaces) if workspaces else None
    layout = service.layout
    in_use = in_use_keys()
    cutoff = time.time() - args.unused_days * 86400 if args.unused_days is not None else None
    removed, freed = 0, 0
    going = []
    for entry in store.entries(layout):
        reason = _prune_reason(entry, keep, cutoff, args.unused_days)
        if reason is None:
            continue
        if entry.key in in_use:
            print(f"kept {entry.key}: in use by a running manager")
            continue
        going.append((entry, reason))
    # what removing each frees, as `wsm env list` counts it: its blocks on disk that have no
    # name elsewhere (files uv linked from its cache stay there)
    usage = measure({entry.key: layout.env(entry.key) for entry, _ in going}).envs
    for entry, reason in going:
        size = usage[entry.key].own_bytes
        if args.dry_run:
            removed += 1
            freed += size
            print(f"would remove {entry.key} ({reason}, {_size(size)})")
            continue
        lock = try_lock(layout, entry.key)
        if lock is None:
            print(f"kept {entry.key}: being built right now")
            continue
        try:
            store.remove(layout, entry.key)
        finally:
            lock.release()
        removed += 1
        freed += size
        print(f"removed {entry.key} ({reason}, {_size(size)})")
    plural = "s" if removed != 1 else ""
    if args.dry_run:
        print(f"{removed} environment{plural} would be removed, {_size(freed)} freed")
    else:
        store.clean_stale_builds(layout)
        print(f"{removed} environment{plural} removed, {_size(freed)} freed")
    service.close()
    return 0


def _workspace_keys(service, paths: List[str]) -> Set[str]:
    from workspace_manager.envs.errors import EnvBuildError
    from workspace_manager.workspace.errors import WorkspaceError
    from workspace_manager.workspace.load import load_workspace

    keys: Set[str] = set()
    for path in paths:
        try:
            workspace = load_workspace(Path(path))
        except WorkspaceError as exc:
            for problem in exc.problems:
                print(str(problem), file=sys.stderr)
            raise SystemExit(targets.EXIT_INVALID) from None
        for loc in workspace.locations:
            if loc.environment is None:
                continue
            try:
                keys.add(service.recipe(loc).key)
            except EnvBuildError as exc:
                print(f"wsm: {path}: {loc.name}: {exc} (its env cannot be told apart)")
    return keys


def _prune_reason(entry, keep: Optional[Set[str]], cutoff: Optional[float], days) -> Optional[str]:
    if not entry.complete:
        return "incomplete"
    if keep is not None and entry.key not in keep:
        return "no given workspace uses it"
    if cutoff is not None and entry.last_used < cutoff:
        return f"unused for {days:g} days"
    return None


# ---- formatting ------------------------------------------------------------------------------


def _size(n: Optional[int]) -> str:
    return "-" if n is None else binary_size(n)


def _ago(ts: Optional[float]) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= length:
            return f"{s // length}{unit} ago"
    return f"{s}s ago"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _short_left(text: str, width: int) -> str:
    """Cut at the start: a path's end (the lock's or file's name) says the most."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]


def _shared(size: Optional[int], shared: Optional[int]) -> str:
    if size is None or shared is None:
        return "-"
    if not shared:
        return "none"
    return f"{binary_size(shared)} ({100 * shared / size:.0f}%)" if size else binary_size(shared)


def _describe_source(source: dict) -> str:
    """`uv.lock /w/mono/uv.lock (members/one, groups dev)`, `requirements a, b`..."""
    kind, path = source["kind"], source.get("path")
    if kind == "requirements":
        return "requirements " + _short(", ".join(source["requirements"]) or "(none)", 50)
    text = f"{kind} {_short_left(_here(path), 50)}"
    notes = []
    project, lock = source.get("project"), path
    if kind in ("uv.lock", "pylock") and project and lock:
        member = os.path.relpath(project, os.path.dirname(lock))
        if member != ".":
            notes.append(member)
    for what in ("extras", "groups"):
        if source.get(what):
            notes.append(f"{what} {','.join(source[what])}")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _here(path: Optional[str]) -> str:
    """A path under the current folder relative to it (shorter), any other as it is."""
    if not path:
        return "?"
    return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def _describe_user(user: dict) -> str:
    """`pkg in ws/a.yaml (running)`: the location, then what its manager runs."""
    kind, _, rest = user["workspace"].partition(":")
    where = _here(rest) if kind == "workspace" else user["workspace"]
    return f"{user['location']} in {where}" + (" (running)" if user["running"] else "")

"""How long hostile workspace files take: a merge-key "billion laughs" and deep nesting.

    python bench/yaml_bomb_bench.py            # the PyYAML installed with wsm
    PYTHONPATH=/tmp/pyyaml-6.0.3 python bench/yaml_bomb_bench.py   # another PyYAML

Prints one JSON line: the PyYAML version, each input's size in bytes, and the seconds
`yaml.safe_load` and wsm's own loader (`load_workspace`) take on it. `safe_load` runs in a
child process killed after --limit seconds (reported as that limit, `"capped": true`).
PyYAML up to 6.0.3 copies every merged pair again at each level of merge keys, so the
merge bomb is exponential there; 6.0.4 keeps each merged key once. wsm flattens merges
itself, so its loader is fast whatever PyYAML is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

NAMES = "abcdefghijklmnop"


def merge_bomb(levels: int = 7, fan: int = 10) -> str:
    """`a` has `fan` keys; each next mapping merges `fan` aliases of the one before."""
    lines = ["a: &a {" + ", ".join(f"k{i}: {i}" for i in range(fan)) + "}"]
    for i in range(1, levels):
        lines.append(f"{NAMES[i]}: &{NAMES[i]} {{<<: [{', '.join(['*' + NAMES[i - 1]] * fan)}]}}")
    lines.append(f"load_from: [{{python_module: {{<<: *{NAMES[levels - 1]}, module_name: m}}}}]")
    return "\n".join(lines) + "\n"


def deep_nesting(depth: int = 500) -> str:
    return "load_from: " + "[" * depth + "]" * depth + "\n"


def _safe_load_seconds(path: Path, limit: float) -> Dict[str, Any]:
    code = (
        "import sys, time, yaml\n"
        "text = open(sys.argv[1]).read()\n"
        "t = time.perf_counter()\n"
        "try:\n    yaml.safe_load(text)\nexcept Exception:\n    pass\n"
        "print(time.perf_counter() - t)\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=limit,
            check=True,
        ).stdout
    except subprocess.TimeoutExpired:
        return {"seconds": limit, "capped": True}
    return {"seconds": round(float(out), 3), "capped": False}


def _wsm_seconds(path: Path) -> Dict[str, Any]:
    from workspace_manager.workspace.errors import WorkspaceError
    from workspace_manager.workspace.load import load_workspace

    started = time.perf_counter()
    first = "loaded"
    try:
        load_workspace(path)
    except WorkspaceError as error:
        first = str(error.problems[0]) if error.problems else "invalid"
    except RecursionError:
        first = "RecursionError"
    return {"seconds": round(time.perf_counter() - started, 3), "first_problem": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=7)
    parser.add_argument("--fan", type=int, default=10)
    parser.add_argument("--depth", type=int, default=500)
    parser.add_argument("--limit", type=float, default=60.0, help="cap for safe_load, seconds")
    args = parser.parse_args()
    import yaml

    result: Dict[str, Any] = {"pyyaml": yaml.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (
            ("merge_bomb", merge_bomb(args.levels, args.fan)),
            ("deep_nesting", deep_nesting(args.depth)),
        ):
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text)
            result[name] = {
                "bytes": len(text.encode()),
                "safe_load": _safe_load_seconds(path, args.limit),
                "wsm": _wsm_seconds(path),
            }
    print(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

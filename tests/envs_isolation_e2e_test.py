"""Issue 3's isolation proof under one real `wsm up`: two envs with conflicting versions of the
same local package, built offline, plus a location on Debian's /usr/bin/python3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_up_test import manager_client
from e2e import WorkspaceDir, WsmUp

SAMPLE = Path(__file__).resolve().parent.parent / "sample_workspaces" / "isolation"


def test_isolation_sample_three_locations_three_worlds(ws: WorkspaceDir) -> None:
    shutil.copytree(SAMPLE, ws.root / "isolation")
    path = ws.root / "isolation" / "workspace.yaml"
    with WsmUp(ws, "-w", str(path)) as up:
        status = up.wait_all_settled(timeout=300)
        states = {name: loc["state"] for name, loc in status["locations"].items()}
        assert states == {"team_old": "ready", "team_new": "ready", "system_python": "ready"}
        seen = {}
        with manager_client(ws) as client:
            for name in states:
                result = client.call(
                    "call",
                    {
                        "location": name,
                        "method": "evaluate_sensor",
                        "params": {"sensor": "versions_sensor"},
                    },
                )
                config = result["run_requests"][0]["run_config"]
                snap = client.call("snapshot", {"location": name})
                tags = snap["repositories"][0]["jobs"][0]["tags"]
                assert tags["teamlib"] == config["teamlib"]
                seen[name] = (config["teamlib"], config["python"].split()[0], config["executable"])
        assert seen["team_old"][0] == "1.0"
        assert seen["team_new"][0] == "2.0"
        assert seen["system_python"][0] == "absent"
        assert seen["system_python"][1] == "3.11.2"
        assert seen["team_new"][1].startswith("3.12")  # its own interpreter, found by spec
        assert len({s[2] for s in seen.values()}) == 3
        assert "/envs/" in seen["team_old"][2] and "/envs/" in seen["team_new"][2]
        # the build used no network: pip ran with --no-index (the sample's pip_args)
        assert "building" in up.output()

    # a second start reuses both envs: no build at all
    with WsmUp(ws, "-w", str(path)) as up:
        up.wait_all_settled(timeout=60)
        assert "creating virtualenv" not in up.output()
        assert "building" not in up.output()
        # `env prune` for a workspace that needs none of them keeps what a manager runs on
        other = ws.workspace(
            {"load_from": [{"python_file": "isolation/repository.py"}]}, name="other.yaml"
        )
        kept = ws.run("env", "prune", "-w", str(other))
        assert kept.returncode == 0, kept.stderr
        assert kept.stdout.count("in use by a running manager") == 2
    # once the manager is gone, the same prune removes both
    gone = ws.run("env", "prune", "-w", str(other))
    assert gone.returncode == 0 and "2 environments removed" in gone.stdout, gone.stdout
    listed = ws.run("env", "list", "--json")
    assert json.loads(listed.stdout) == []

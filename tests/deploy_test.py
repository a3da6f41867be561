"""deploy/: every manifest parses, every probe hits a real endpoint on the port the container's
--health serves, Services expose the ports `wsm serve --listen`s on, the workspace files in
the ConfigMaps load with wsm's own loader and point at those Services, and the systemd unit
has what it needs."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import yaml

from workspace_manager.cli.main import build_parser
from workspace_manager.http.listen import parse_listen
from workspace_manager.http.routes import default_routes, resolve
from workspace_manager.protocol.address import parse_address
from workspace_manager.supervisor.manager import Manager
from workspace_manager.workspace.load import load_workspace
from workspace_manager.workspace.model import RemoteTarget

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
KUBE = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "wsm.service"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def manifests() -> List[Tuple[str, Dict[str, Any]]]:
    out = []
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append((path.name, doc))
    return out


def of_kind(kind: str) -> List[Dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def containers() -> Iterator[Tuple[Dict[str, Any], Dict[str, Any]]]:
    for deployment in of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def container_port(container: Dict[str, Any], port: Any) -> int:
    """A port given by number or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return number


def cli(container: Dict[str, Any]):
    """The container's arguments, read by wsm's own parser (so they are valid wsm usage)."""
    args = list(container.get("command", [])[1:]) + list(container["args"])
    return build_parser().parse_args(args)


def health_port(container: Dict[str, Any]) -> int:
    args = cli(container)
    assert args.health, f"{container['name']}: no --health, so no probe can work"
    return parse_listen(args.health)[1]


def probe_routes() -> Dict[str, Any]:
    """Every endpoint a wsm health server answers (the manager adds /metrics to these)."""
    return default_routes()


def env_of(container: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# -- manifests -----------------------------------------------------------------------------------


def test_every_manifest_parses_and_kustomize_lists_them_all() -> None:
    docs = manifests()
    assert {doc["kind"] for _, doc in docs} >= {"Deployment", "Service", "ConfigMap"}
    for name, doc in docs:
        assert doc.get("apiVersion") and doc.get("metadata", {}).get("name"), name
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_deployments_select_their_own_pods() -> None:
    deployments = of_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} >= {"wsm-manager", "wsm-team-a"}
    for d in deployments:
        wanted = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert wanted.items() <= labels.items(), d["metadata"]["name"]


@pytest.mark.parametrize("probe", PROBES)
def test_every_probe_hits_a_real_endpoint_on_the_health_port(probe: str) -> None:
    seen = 0
    for deployment, container in containers():
        where = f"{deployment['metadata']['name']}/{container['name']} {probe}"
        assert probe in container, f"{where} is missing"
        get = container[probe]["httpGet"]
        assert resolve(probe_routes(), get["path"]) is not None, f"{where}: no route {get['path']}"
        assert container_port(container, get["port"]) == health_port(container), where
        seen += 1
    assert seen >= 2


def test_liveness_never_depends_on_a_location_and_readiness_does() -> None:
    for _, container in containers():
        assert container["livenessProbe"]["httpGet"]["path"] in ("/livez", "/healthz")
        assert container["readinessProbe"]["httpGet"]["path"].startswith("/readyz")


def test_the_manager_runs_wsm_up_and_the_locations_wsm_serve() -> None:
    commands = {d["metadata"]["name"]: cli(c).command for d, c in containers()}
    assert commands["wsm-manager"] == "up"
    assert commands["wsm-team-a"] == "serve"
    manager = next(c for d, c in containers() if d["metadata"]["name"] == "wsm-manager")
    assert of_kind("Deployment")[0]["spec"]["replicas"] == 1
    assert cli(manager).log_format == "json"


def test_prometheus_annotations_point_at_metrics_on_the_health_port(tmp_path: Path) -> None:
    for deployment, container in containers():
        notes = deployment["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") != "true":
            continue
        assert int(notes["prometheus.io/port"]) == health_port(container)
        assert notes["prometheus.io/path"] == "/metrics"
    # ... and every manager's health server does serve /metrics
    from workspace_manager.workspace.model import Workspace

    manager = Manager(Workspace(None, tmp_path, ()), "deploy-test", health=("127.0.0.1", 0))
    assert manager.metrics.exposition()[1].startswith("text/plain")


def test_services_expose_what_the_pods_listen_on() -> None:
    services = of_kind("Service")
    assert services
    listening = set()
    for service in services:
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        pods = [
            (d, c)
            for d, c in containers()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, f"Service {name} selects {len(pods)} containers"
        _, container = pods[0]
        exposed = {
            container_port(container, p.get("targetPort", p["port"]))
            for p in service["spec"]["ports"]
        }
        args = cli(container)
        if args.command == "serve":
            address = parse_address(args.listen)
            assert not address.is_unix, f"{name}: a Unix socket cannot be reached from another pod"
            assert address.target[1] in exposed, f"Service {name} does not expose --listen"
            listening.add((name, address.target[1]))
        for number in exposed:  # nothing points at a port the container does not declare
            assert number in {p["containerPort"] for p in container["ports"]}
    assert listening  # at least one location is reachable


def test_serve_tokens_come_from_a_secret() -> None:
    for _, container in containers():
        args = cli(container)
        if args.command != "serve":
            continue
        assert args.token_env, "a location server without a token"
        ref = env_of(container)[args.token_env]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"]


def test_runtime_dir_is_a_folder_wsm_creates_itself() -> None:
    """An emptyDir is root's: wsm refuses a runtime dir it does not own, so point below it."""
    for _, container in containers():
        runtime = env_of(container)["WSM_RUNTIME_DIR"]["value"]
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(runtime.startswith(m.rstrip("/") + "/") for m in mounts), runtime
        assert runtime not in mounts


# -- the workspace files in the ConfigMaps --------------------------------------------------------


def config_maps() -> Dict[str, Dict[str, str]]:
    return {c["metadata"]["name"]: c["data"] for c in of_kind("ConfigMap")}


def mounted_workspace(container: Dict[str, Any], deployment: Dict[str, Any]) -> str:
    """The workspace.yaml text the container's `-w` reads, through its volume mount."""
    path = cli(container).workspace
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == path]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    config_map = volumes[mount["name"]]["configMap"]["name"]
    return config_maps()[config_map][mount["subPath"]]


def load_as_in_the_image(text: str, root: Path):
    """Load a workspace with wsm's loader, with stand-ins for the image's code."""
    data = yaml.safe_load(text)
    for entry in data["load_from"]:
        ((kind, fields),) = entry.items()
        if kind == "python_file":
            file = root / fields["relative_path"]
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text("")
        if isinstance(fields, dict) and fields.get("working_directory"):
            (root / fields["working_directory"]).mkdir(parents=True, exist_ok=True)
    path = root / "workspace.yaml"
    path.write_text(text)
    return load_workspace(path)


def test_the_managers_workspace_reaches_each_location_through_its_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment, manager = next((d, c) for d, c in containers() if cli(c).command == "up")
    workspace = load_as_in_the_image(mounted_workspace(manager, deployment), tmp_path)
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    remote = [loc for loc in workspace.locations if isinstance(loc.target, RemoteTarget)]
    assert remote
    for loc in remote:
        target = loc.target
        assert isinstance(target, RemoteTarget)
        service = services[target.host]
        assert target.port in {p["port"] for p in service["spec"]["ports"]}
        # the Service's port leads to the pod's --listen port
        (port,) = [p for p in service["spec"]["ports"] if p["port"] == target.port]
        pod = next(
            c
            for d, c in containers()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        )
        listen = parse_address(cli(pod).listen).target[1]
        assert container_port(pod, port.get("targetPort", port["port"])) == listen
        # the serving pod serves that very location, with the same token
        assert cli(pod).location == loc.name
        manager_secret = env_of(manager)[target.token_env]["valueFrom"]["secretKeyRef"]
        pod_secret = env_of(pod)[cli(pod).token_env]["valueFrom"]["secretKeyRef"]
        assert manager_secret == pod_secret


def test_each_location_pod_serves_a_code_location_of_its_workspace(tmp_path: Path) -> None:
    for i, (deployment, container) in enumerate(containers()):
        args = cli(container)
        if args.command != "serve":
            continue
        root = tmp_path / str(i)
        root.mkdir()
        workspace = load_as_in_the_image(mounted_workspace(container, deployment), root)
        location = workspace.location(args.location)
        assert not location.is_remote


# -- systemd -------------------------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def environment_lines() -> Dict[str, str]:
    """Environment= may repeat (configparser keeps the last one): read them all."""
    out = {}
    for line in UNIT.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line[len("Environment=") :].partition("=")
            out[key] = value
    return out


def test_systemd_unit_has_what_a_service_needs() -> None:
    u = unit()
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    s = u["Service"]
    assert s["Type"] in ("simple", "exec")
    exec_start = shlex.split(s["ExecStart"])
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/wsm")
    args = build_parser().parse_args(exec_start[1:])
    assert args.command == "up" and args.workspace.startswith("/")
    parse_listen(args.health)
    assert shlex.split(s["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert s["KillSignal"] == "SIGTERM"
    assert s["KillMode"] == "mixed"  # wsm stops its own locations; SIGKILL for what is left
    assert int(s["TimeoutStopSec"]) > 5  # the manager's per-location stop grace
    assert s["Restart"] == "on-failure"
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in u["Unit"]["After"]


def test_systemd_dirs_are_the_ones_wsm_uses() -> None:
    s = unit()["Service"]
    env = environment_lines()
    assert env["WSM_RUNTIME_DIR"] == "/run/" + s["RuntimeDirectory"]
    assert s["RuntimeDirectoryMode"] == "0700"
    assert env["WSM_CACHE_DIR"] == "/var/cache/" + s["CacheDirectory"]
    assert env["WSM_STATE_DIR"] == "/var/lib/" + s["StateDirectory"]

"""The typed, frozen form of a workspace: what every later step (plan, envs, supervisor) reads.

Nothing here touches the disk or YAML; `workspace.load` builds these objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

RESTART_POLICIES = ("always", "on-failure", "never")


@dataclass(frozen=True)
class Supervision:
    restart: str = "on-failure"
    max_restarts: int = 5
    window_seconds: float = 60.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    startup_timeout_seconds: float = 60.0
    call_timeout_seconds: float = 30.0
    heartbeat_seconds: float = 2.0
    memory_limit_mb: Optional[float] = None
    max_message_mb: float = 64.0  # frame limit of the location's connections, both ways

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_message_mb * 1024 * 1024)


@dataclass(frozen=True)
class TagConcurrencyLimit:
    """At most `limit` runs in progress with tag `key` (= `value`, or any value if None)."""

    key: str
    limit: int
    value: Optional[str] = None


@dataclass(frozen=True)
class DaemonConfig:
    """The workspace's `daemon:` block (SPEC section 7). Retention in days; None: forever."""

    default_status: Optional[str] = None  # "RUNNING" | "STOPPED": for code that sets none
    max_concurrent_runs: int = 10
    tag_concurrency_limits: Tuple[TagConcurrencyLimit, ...] = ()
    run_timeout_seconds: Optional[float] = None
    run_drain_seconds: float = 30.0
    max_catchup_runs: int = 1  # missed schedule ticks launched after downtime, the latest
    run_retention_days: Optional[float] = 90.0
    log_retention_days: Optional[float] = 30.0
    tick_retention_days: Optional[float] = 7.0
    skipped_tick_retention_days: Optional[float] = 1.0


@dataclass(frozen=True)
class EnvironmentSpec:
    """A virtualenv wsm builds (or reuses) for a location."""

    python: Optional[str] = None  # version spec ("3.11") or interpreter path; None: wsm's own
    requirements: Tuple[str, ...] = ()
    requirements_file: Optional[Path] = None  # absolute
    pip_args: Tuple[str, ...] = ()
    installer: str = "pip"  # pip | uv
    # A project folder with pyproject.toml (absolute; written relative to the working
    # directory): its lock decides the environment, see envs/project.py.
    project: Optional[Path] = None
    extras: Tuple[str, ...] = ()  # the project's optional dependencies to install
    groups: Tuple[str, ...] = ()  # its dependency groups (PEP 735) to install


@dataclass(frozen=True)
class CodeTarget:
    """Where a local location's code lives: exactly one of python_file / module_name."""

    kind: str  # python_file | python_module | python_package
    working_directory: Path  # absolute; put first on the loader's sys.path
    python_file: Optional[Path] = None  # absolute, for kind == python_file
    module_name: Optional[str] = None  # for python_module and python_package
    attribute: Optional[str] = None


@dataclass(frozen=True)
class RemoteTarget:
    """A location served elsewhere by `wsm serve` (Dagster's grpc_server key)."""

    host: str
    port: Optional[int] = None
    socket: Optional[str] = None
    token_env: Optional[str] = None
    token_file: Optional[Path] = None
    ssl: bool = False
    ca_file: Optional[Path] = None

    kind: str = field(default="grpc_server", init=False)


@dataclass(frozen=True)
class LocationConfig:
    name: str
    target: Union[CodeTarget, RemoteTarget]
    supervision: Supervision  # workspace-wide block merged with the location's own, key by key
    executable_path: Optional[Path] = None
    environment: Optional[EnvironmentSpec] = None
    env_vars: Tuple[Tuple[str, str], ...] = ()
    # the location's own `daemon: {max_concurrent_runs}`; None: only the workspace's limit
    max_concurrent_runs: Optional[int] = None
    # 1-based position of the entry in workspace.yaml (0: not from a file). Not compared:
    # moving an entry (e.g. inserting one above it) does not change the location.
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    @property
    def is_remote(self) -> bool:
        return isinstance(self.target, RemoteTarget)


@dataclass(frozen=True)
class Workspace:
    path: Optional[Path]  # absolute path of workspace.yaml; None for -f/-m
    root: Path  # folder that relative paths are resolved against
    locations: Tuple[LocationConfig, ...]
    supervision: Supervision = Supervision()
    daemon: DaemonConfig = DaemonConfig()
    # What is valid but worth saying (`wsm validate` prints them): "PATH:LINE:COLUMN: text".
    warnings: Tuple[str, ...] = field(default=(), compare=False)

    def location(self, name: str) -> LocationConfig:
        for loc in self.locations:
            if loc.name == name:
                return loc
        raise KeyError(name)

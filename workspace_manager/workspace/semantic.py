"""Checks the schema cannot express, done while building the typed Workspace.

Files and folders must exist and stay inside the workspace folder (no `..`, no symlink
out), location names (given, read from the environment or derived) must be unique and safe
file names, an interpreter must be executable (a version spec must find one), every
requirement must be one pip can install, a grpc_server needs its token. The rule: what would
certainly fail at `wsm up` is found here. Building and checking are one pass because
resolving a path *is* checking it.
Only entries that passed the schema reach this module, so shapes are trusted here.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .document import Document, YamlPath
from .errors import Problem
from .interpreter_check import InterpreterChecker
from .model import (
    CodeTarget,
    DaemonConfig,
    EnvironmentSpec,
    LocationConfig,
    RemoteTarget,
    Supervision,
    TagConcurrencyLimit,
)
from .names import name_problem
from .requirements_check import (
    pip_args_problems,
    requirement_problem,
    requirements_file_problems,
)
from .schema import quote, workspace_schema

LOCAL_KINDS = {
    "python_file": "relative_path",
    "python_module": "module_name",
    "python_package": "package_name",
}


def derived_location_name(kind: str, value: str) -> str:
    """Dagster's default name: the file's stem, or the module / package name."""
    if kind == "python_file":
        return Path(value).stem
    return value


def supervision_from(block: Dict[str, Any], base: Supervision) -> Supervision:
    """`base` with the keys of a (schema-valid) supervision block laid over it."""
    values: Dict[str, Any] = {}
    for key, value in block.items():
        if key == "restart":
            values[key] = value
        elif key == "max_restarts":
            values[key] = int(value)
        elif key == "memory_limit_mb":
            values[key] = None if value is None else float(value)
        else:
            values[key] = float(value)
    return replace(base, **values)


#: `daemon.retention` keys -> DaemonConfig fields.
RETENTION_FIELDS = {
    "runs_days": "run_retention_days",
    "logs_days": "log_retention_days",
    "ticks_days": "tick_retention_days",
    "skipped_ticks_days": "skipped_tick_retention_days",
}


def _within(child: str, parent: str) -> bool:
    return os.path.commonpath([child, parent]) == parent


class _Fields:
    """The keys of one entry, long or short form, with where each one sits in the YAML."""

    def __init__(self, kind: str, body: Any, kind_path: YamlPath) -> None:
        self.short = isinstance(body, str)
        self.kind = kind
        self.kind_path = kind_path
        if self.short:
            self.values: Dict[str, Any] = {LOCAL_KINDS[kind]: body}
        else:
            self.values = dict(body)

    def path(self, key: str) -> YamlPath:
        return self.kind_path if self.short else self.kind_path + (key,)

    def label(self, key: str) -> str:
        """What a message calls the key: the kind itself for `- python_file: repo.py`."""
        return self.kind if self.short else key


class Builder:
    """Turns a schema-valid document into LocationConfigs, collecting every problem."""

    def __init__(self, doc: Document, base: Path) -> None:
        self.doc = doc
        self.base = os.path.abspath(base)  # the workspace file's folder, symlinks kept
        self.real_base = os.path.realpath(self.base)
        self.problems: List[Problem] = []
        self.warnings: List[Problem] = []  # valid, but worth saying (`wsm validate` prints them)
        self._names: Dict[str, int] = {}  # location name -> line of the entry using it
        self.interpreters = InterpreterChecker()

    def problem(self, path: YamlPath, message: str, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, at_key))

    # The whole document.

    def build(self, broken: List[YamlPath]) -> Tuple[Supervision, List[LocationConfig]]:
        """Workspace-wide supervision and the locations; `broken` are paths the schema
        rejected, whose entries are skipped here (their problems are already reported)."""

        def is_broken(prefix: YamlPath) -> bool:
            return any(path[: len(prefix)] == prefix for path in broken)

        data = self.doc.data
        supervision = Supervision()
        block = data.get("supervision")
        if isinstance(block, dict) and not is_broken(("supervision",)):
            supervision = supervision_from(block, supervision)
            self._check_backoff(supervision, block, ("supervision",))
        locations: List[LocationConfig] = []
        entries = data.get("load_from")
        if not isinstance(entries, list):
            return supervision, locations
        for index, entry in enumerate(entries):
            entry_path: YamlPath = ("load_from", index)
            if is_broken(entry_path) or not isinstance(entry, dict) or len(entry) != 1:
                continue
            ((kind, body),) = entry.items()
            fields = _Fields(kind, body, entry_path + (kind,))
            if kind == "grpc_server":
                location = self._remote(fields, supervision)
            else:
                location = self._local(fields, supervision)
            if location is not None:
                locations.append(location)
        return supervision, locations

    def daemon(self, broken: List[YamlPath]) -> DaemonConfig:
        """The workspace's `daemon:` block (schema-valid unless in `broken`); the defaults
        for what it does not set. `retention: {runs_days, ...}` maps to the
        *_retention_days fields."""
        block = self.doc.data.get("daemon") if isinstance(self.doc.data, dict) else None
        if not isinstance(block, dict) or any(p[:1] == ("daemon",) for p in broken):
            return DaemonConfig()
        fields: Dict[str, Any] = {}
        if block.get("default_status") is not None:
            fields["default_status"] = str(block["default_status"]).upper()
        for key in ("max_concurrent_runs", "run_drain_seconds", "max_catchup_runs"):
            if key in block:
                fields[key] = block[key]
        if "run_timeout_seconds" in block:
            fields["run_timeout_seconds"] = block["run_timeout_seconds"]
        limits = []
        seen: Dict[Tuple[str, Optional[str]], int] = {}
        for index, item in enumerate(block.get("tag_concurrency_limits") or []):
            key, value = item["key"], item.get("value")
            if (key, value) in seen:
                self.problem(
                    ("daemon", "tag_concurrency_limits", index),
                    f"a second limit for tag {quote(key)}"
                    + (f" = {quote(value)}" if value is not None else "")
                    + f" (the first is item {seen[(key, value)] + 1}); keep one",
                )
            seen[(key, value)] = index
            limits.append(TagConcurrencyLimit(key=key, limit=item["limit"], value=value))
        fields["tag_concurrency_limits"] = tuple(limits)
        retention = block.get("retention") or {}
        for key, field_name in RETENTION_FIELDS.items():
            if key in retention:
                fields[field_name] = retention[key]
        return DaemonConfig(**fields)

    # One entry.

    def _local(self, fields: _Fields, workspace_wide: Supervision) -> Optional[LocationConfig]:
        count = len(self.problems)
        kind = fields.kind
        main_key = LOCAL_KINDS[kind]
        main = self._source(fields, main_key)
        python_file: Optional[Path] = None
        module_name: Optional[str] = None
        working_directory: Optional[Path] = Path(self.real_base)
        if kind == "python_file" and main is not None:
            python_file = self._path(fields, main_key, main, want="file")
            working_directory = python_file.parent if python_file else None
        else:
            module_name = main
            if isinstance(fields.values.get(main_key), dict) and main is not None:
                module_name = main = self._module_from_env(fields, main_key, main)
        raw_wd = self._source(fields, "working_directory")
        if raw_wd is not None:
            working_directory = self._path(fields, "working_directory", raw_wd, want="folder")

        executable = None
        raw_exe = self._source(fields, "executable_path")
        if raw_exe is not None:
            executable = self._executable(
                fields.path("executable_path"), "executable_path", raw_exe
            )
        environment = None
        if "environment" in fields.values:
            environment = self._environment(
                fields.values["environment"], fields.path("environment"), working_directory
            )
            if raw_exe is not None:
                self.problem(
                    fields.path("environment"),
                    "executable_path and environment cannot be used together: executable_path "
                    "runs an existing interpreter as is, environment builds a new virtualenv",
                    at_key=True,
                )
        supervision = workspace_wide
        block = fields.values.get("supervision")
        if block is not None:
            supervision = supervision_from(block, workspace_wide)
            self._check_backoff(supervision, block, fields.path("supervision"))
        name = self._name(fields, main_key, main, derived_location_name)
        attribute = self._source(fields, "attribute")
        if name is None or main is None or working_directory is None or len(self.problems) > count:
            return None
        line, column = self.doc.position(fields.kind_path, at_key=True)
        return LocationConfig(
            name=name,
            target=CodeTarget(
                kind=kind,
                working_directory=working_directory,
                python_file=python_file,
                module_name=module_name,
                attribute=attribute,
            ),
            supervision=supervision,
            executable_path=executable,
            environment=environment,
            env_vars=tuple(fields.values.get("env_vars", {}).items()),
            max_concurrent_runs=(fields.values.get("daemon") or {}).get("max_concurrent_runs"),
            line=line,
            column=column,
        )

    def _remote(self, fields: _Fields, supervision: Supervision) -> Optional[LocationConfig]:
        count = len(self.problems)
        host = self._source(fields, "host") or "localhost"
        port = self._port(fields)
        socket = self._source(fields, "socket")
        if socket is not None:
            socket = os.path.normpath(os.path.join(self.base, socket))
        values = fields.values
        if "port" not in values and "socket" not in values:
            self.problem(fields.kind_path, "grpc_server needs a port or a socket", at_key=True)
        if "port" in values and "socket" in values:
            self.problem(
                fields.path("socket"), "grpc_server takes a port or a socket, not both", True
            )
        if "token_env" in values and "token_file" in values:
            self.problem(fields.path("token_file"), "give token_env or token_file, not both", True)
        elif "token_env" not in values and "token_file" not in values:
            self.problem(
                fields.kind_path,
                "grpc_server needs token_env or token_file: `wsm serve` answers only a client "
                "that has its shared token",
                at_key=True,
            )
        # token_env's variable is read at connect time, not here: the file is right without
        # it, and a manager's secret is often absent where the file is validated (CI).
        token_file = ca_file = None
        if "token_file" in values:
            token_file = self._path(fields, "token_file", values["token_file"], "file", False)
            if token_file is not None:
                self._check_token_file(fields.path("token_file"), token_file)
        if "ca_file" in values:
            ca_file = self._path(fields, "ca_file", values["ca_file"], "file", False)
            if not values.get("ssl", False):
                self.problem(fields.path("ca_file"), "ca_file is only used with ssl: true", True)

        def derive(_kind: str, _value: Any) -> str:
            return f"grpc:{host}:{port}" if port is not None else f"grpc:{Path(socket or '').name}"

        name = self._name(fields, None, None, derive)
        if name is None or len(self.problems) > count:
            return None
        line, column = self.doc.position(fields.kind_path, at_key=True)
        return LocationConfig(
            name=name,
            target=RemoteTarget(
                host=host,
                port=port,
                socket=socket,
                token_env=values.get("token_env"),
                token_file=token_file,
                ssl=bool(values.get("ssl", False)),
                ca_file=ca_file,
            ),
            supervision=supervision,
            line=line,
            column=column,
        )

    # Single values.

    def _source(self, fields: _Fields, key: str) -> Optional[str]:
        """A string key's value; Dagster's `{env: VAR}` form reads the variable now."""
        value = fields.values.get(key)
        if isinstance(value, dict):
            variable = value["env"]
            if variable not in os.environ:
                self.problem(
                    fields.path(key),
                    f"{fields.label(key)} reads the environment variable {variable}, "
                    "which is not set",
                )
                return None
            text = os.environ[variable]
            if not text:
                # The schema refuses an empty literal; the same holds for what a variable holds.
                self.problem(
                    fields.path(key),
                    f"{fields.label(key)} reads the environment variable {variable}, "
                    "which is empty",
                )
                return None
            return text
        return value

    def _module_from_env(self, fields: _Fields, key: str, text: str) -> Optional[str]:
        """A module or package name read with `{env: VAR}` obeys the schema's pattern."""
        pattern = workspace_schema()["$defs"]["moduleName"]["pattern"]
        if re.match(pattern, text):
            return text
        self.problem(
            fields.path(key),
            f"{fields.label(key)}: the environment variable {fields.values[key]['env']} holds "
            f"{quote(text)}, not a Python module name (dotted names like team_b.definitions)",
        )
        return None

    def _port(self, fields: _Fields) -> Optional[int]:
        value = fields.values.get("port")
        if not isinstance(value, dict):
            return value
        text = self._source(fields, "port")
        if text is None:
            return None
        if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
            self.problem(
                fields.path("port"),
                f"port: the environment variable {value['env']} holds {quote(text)}, "
                "not a port number (1-65535)",
            )
            return None
        return int(text)

    def _name(
        self, fields: _Fields, main_key: Optional[str], main: Any, derive: Any
    ) -> Optional[str]:
        explicit = "location_name" in fields.values
        name = self._source(fields, "location_name")
        if explicit and name is None:
            return None
        if not explicit:
            if main_key is not None and main is None:
                return None
            name = derive(fields.kind, main)
        assert name is not None
        unsafe = name_problem(name)
        if unsafe is not None:
            self._unsafe_name(fields, main_key, main, name, explicit, unsafe)
            return None
        line = self.doc.position(fields.kind_path, at_key=True)[0]
        first = self._names.get(name)
        if first is None:
            self._names[name] = line
            return name
        if explicit:
            self.problem(
                fields.path("location_name"),
                f"location name {quote(name)} is already used by the entry on line {first}",
            )
        elif main_key is not None:
            self.problem(
                fields.path(main_key),
                f"location name {quote(name)} (derived from {fields.label(main_key)} "
                f"{quote(main)}) is already used by the entry on line {first}; "
                "set location_name to tell them apart",
            )
        else:
            self.problem(
                fields.kind_path,
                f"location name {quote(name)} (derived from host and port) is already used "
                f"by the entry on line {first}; set location_name to tell them apart",
                at_key=True,
            )
        return None

    def _unsafe_name(
        self,
        fields: _Fields,
        main_key: Optional[str],
        main: Any,
        name: str,
        explicit: bool,
        unsafe: str,
    ) -> None:
        """A name that cannot become a file name; said where it came from."""
        if explicit:
            source = fields.values["location_name"]
            if isinstance(source, dict):
                message = (
                    f"location_name: the environment variable {source['env']} holds "
                    f"{quote(name)}; a location name {unsafe}"
                )
            else:
                message = f"location_name {quote(name)} {unsafe}"
            self.problem(fields.path("location_name"), message)
        elif main_key is not None:
            self.problem(
                fields.path(main_key),
                f"location name {quote(name)} (derived from {fields.label(main_key)} "
                f"{quote(main)}) {unsafe}; set location_name",
            )
        else:
            key = "host" if "host" in fields.values else "socket"
            where = fields.path(key) if key in fields.values else fields.kind_path
            self.problem(
                where,
                f"location name {quote(name)} (derived from {key}) {unsafe}; set location_name",
                at_key=key not in fields.values,
            )

    def _check_token_file(self, path: YamlPath, token_file: Path) -> None:
        try:
            with open(token_file, "rb") as f:  # a token is short: never read a big file whole
                token = f.read(65536).decode("utf-8", errors="replace").strip()
        except OSError as error:
            self.problem(path, f"token_file: cannot read {token_file}: {error.strerror}")
            return
        if not token:
            self.problem(path, f"token_file: {token_file} is empty")

    def _path(
        self, fields: _Fields, key: str, raw: str, want: str, contained: bool = True
    ) -> Optional[Path]:
        return self.resolve(fields.path(key), fields.label(key), raw, want, contained)

    def resolve(
        self, path: YamlPath, label: str, raw: str, want: str, contained: bool = True
    ) -> Optional[Path]:
        """`raw` made absolute against the workspace folder, symlinks resolved.

        With `contained`, a relative path must stay inside the workspace folder, both as
        written (`..`) and after following symlinks. An absolute path is taken as written:
        the user named that place on purpose, as Dagster allows.
        """
        if os.path.isabs(raw):
            candidate = os.path.normpath(raw)
            contained = False
        else:
            candidate = os.path.normpath(os.path.join(self.base, raw))
        if contained and not _within(candidate, self.base):
            self.problem(
                path, f"{label} {quote(raw)} goes outside the workspace folder (through '..')"
            )
            return None
        real = os.path.realpath(candidate)
        if contained and not _within(real, self.real_base):
            link = self._escaping_link(raw)
            through = f"the symlink {quote(link[0])} -> {link[1]}" if link else "a symlink"
            self.problem(
                path, f"{label} {quote(raw)} goes outside the workspace folder through {through}"
            )
            return None
        if not os.path.exists(real):
            where = "" if os.path.isabs(raw) else f" (looked for {candidate})"
            self.problem(path, f"{label}: no such {want} {quote(raw)}{where}")
            return None
        if want == "file" and not os.path.isfile(real):
            self.problem(path, f"{label} {quote(raw)} is not a file")
            return None
        if want == "folder" and not os.path.isdir(real):
            self.problem(path, f"{label} {quote(raw)} is not a folder")
            return None
        return Path(real)

    def _escaping_link(self, raw: str) -> Optional[Tuple[str, str]]:
        """The first symlink on the way to `raw` that points out of the workspace."""
        current = self.base
        for part in Path(raw).parts:
            current = os.path.join(current, part)
            if os.path.islink(current) and not _within(os.path.realpath(current), self.real_base):
                return os.path.relpath(current, self.base), os.readlink(current)
        return None

    def _executable(self, path: YamlPath, label: str, raw: str) -> Optional[Path]:
        """An interpreter as given: a path (relative to the workspace folder) or a command
        on PATH. Symlinks are kept: a virtualenv's bin/python must not be resolved."""
        if os.sep not in raw:
            import shutil  # here: it imports bz2, lzma and zlib (~5 ms) for this one lookup

            found = shutil.which(raw)
            if found is None:
                self.problem(path, f"{label}: no command {quote(raw)} on PATH")
                return None
            return Path(os.path.abspath(found))
        candidate = os.path.normpath(os.path.join(self.base, raw))
        if not os.path.isabs(raw) and not self._executable_within(path, label, raw, candidate):
            return None
        if not os.path.exists(candidate):
            # Imported here: envs imports the workspace model, not the other way round.
            from workspace_manager.envs.resolve import dangling_link

            dangling = dangling_link(candidate)
            if dangling is not None:
                self.problem(path, f"{label} {quote(raw)} {dangling}")
                return None
            where = "" if os.path.isabs(raw) else f" (looked for {candidate})"
            self.problem(path, f"{label}: no such file {quote(raw)}{where}")
            return None
        if os.path.isdir(candidate) or not os.access(candidate, os.X_OK):
            self.problem(path, f"{label} {quote(raw)} is not an executable file")
            return None
        return Path(candidate)

    def _executable_within(self, path: YamlPath, label: str, raw: str, candidate: str) -> bool:
        """A relative interpreter path stays in the workspace folder, as relative_path does:
        no `..` out, and its folder reached through no symlink out. The file itself may be a
        symlink (a virtualenv's bin/python points at the interpreter it was made from)."""
        if not _within(candidate, self.base):
            self.problem(
                path, f"{label} {quote(raw)} goes outside the workspace folder (through '..')"
            )
            return False
        folder = os.path.realpath(os.path.dirname(candidate))
        if not _within(folder, self.real_base):
            link = self._escaping_link(os.path.dirname(raw))
            through = f"the symlink {quote(link[0])} -> {link[1]}" if link else "a symlink"
            self.problem(
                path, f"{label} {quote(raw)} goes outside the workspace folder through {through}"
            )
            return False
        return True

    def _environment(
        self, block: Dict[str, Any], path: YamlPath, working_directory: Optional[Path]
    ) -> EnvironmentSpec:
        python = block.get("python")
        if python is not None and os.sep in python:
            exe = self._executable(path + ("python",), "python", python)
            python = str(exe) if exe is not None else python
        elif python is not None:
            problem = self.interpreters.spec_problem(python)
            if problem is not None:
                self.problem(path + ("python",), f"python: {problem}")
        requirements_file = None
        if "requirements_file" in block:
            requirements_file = self.resolve(
                path + ("requirements_file",),
                "requirements_file",
                block["requirements_file"],
                "file",
            )
        if working_directory is not None:
            # Local paths resolve against the working directory, as the build resolves them.
            self._check_requirements(block, path, working_directory, requirements_file)
        project = None
        if "project" in block and working_directory is not None:
            project = self._project(block, path, working_directory)
        for key in ("extras", "groups"):
            if block.get(key) and "project" not in block:
                self.problem(path + (key,), f"{key} choose what a project installs: add project")
        return EnvironmentSpec(
            python=python,
            requirements=tuple(block.get("requirements", ())),
            requirements_file=requirements_file,
            pip_args=tuple(block.get("pip_args", ())),
            installer=block.get("installer", "pip"),
            project=project,
            extras=tuple(block.get("extras", ())),
            groups=tuple(block.get("groups", ())),
        )

    def _project(self, block: Dict[str, Any], path: YamlPath, base: Path) -> Optional[Path]:
        """`project`: a folder with pyproject.toml, relative to the working directory; it is
        the environment's one source. Without a lock it is valid but not reproducible."""
        from workspace_manager.envs.project import find_source

        raw = block["project"]
        for other in ("requirements", "requirements_file"):
            if other in block:
                self.problem(
                    path + (other,),
                    f"{other} and project cannot be used together: the project's lock (or its "
                    "pyproject.toml) decides what the environment holds",
                    at_key=True,
                )
        folder = Path(os.path.realpath(os.path.join(base, raw)))
        if not folder.is_dir():
            self.problem(
                path + ("project",), f"project: no such folder {quote(raw)} (looked in {base})"
            )
            return None
        if not (folder / "pyproject.toml").is_file():
            self.problem(path + ("project",), f"project: {quote(raw)} has no pyproject.toml")
            return None
        source = find_source(folder)
        if source.reproducible and block.get("pip_args"):
            self.warnings.append(
                self.doc.problem(
                    path + ("pip_args",),
                    f"pip_args are not used: {source.kind} installs exactly what "
                    f"{source.lock.name if source.lock else 'the lock'} names (uv reads index "
                    "settings from the project's [tool.uv] or uv.toml)",
                    at_key=True,
                )
            )
        if not source.reproducible:
            self.warnings.append(
                self.doc.problem(
                    path + ("project",),
                    f"project {quote(raw)} has no lock (uv.lock or pylock.toml): its environment "
                    "is installed from pyproject.toml's ranges and is not reproducible",
                )
            )
        return folder

    def _check_requirements(
        self,
        block: Dict[str, Any],
        path: YamlPath,
        base: Path,
        requirements_file: Optional[Path],
    ) -> None:
        for index, item in enumerate(block.get("requirements", ())):
            problem = requirement_problem(item, base)
            if problem is not None:
                self.problem(path + ("requirements", index), f"requirements: {problem}")
        for index, problem in pip_args_problems(block.get("pip_args", ()), base):
            self.problem(path + ("pip_args", index), f"pip_args: {problem}")
        if requirements_file is not None:
            shown = block["requirements_file"]
            for problem in requirements_file_problems(requirements_file, base):
                problem = problem.replace(str(requirements_file), shown, 1)
                self.problem(path + ("requirements_file",), f"requirements_file: {problem}")

    def _check_backoff(self, merged: Supervision, block: Dict[str, Any], path: YamlPath) -> None:
        """backoff_max below backoff_initial is a contradiction; blame the block that set one."""
        if merged.backoff_max_seconds >= merged.backoff_initial_seconds:
            return
        key = "backoff_max_seconds" if "backoff_max_seconds" in block else "backoff_initial_seconds"
        if key not in block:
            return  # inherited from the workspace-wide block, reported there
        self.problem(
            path + (key,),
            f"backoff_max_seconds ({merged.backoff_max_seconds:g}) is less than "
            f"backoff_initial_seconds ({merged.backoff_initial_seconds:g})",
        )

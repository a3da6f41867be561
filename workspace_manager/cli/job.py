"""`wsm job launch` (queue a run through the running manager) and `wsm job execute` (run
one now, in the foreground, without a manager); SPEC section 7."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from workspace_manager.cli import control_client, targets

EXIT_FAILED = 1
#: The most of a `--config @FILE` that is read (bytes).
CONFIG_FILE_LIMIT = 16 << 20
#: How often `launch --wait` checks that the manager still runs (seconds).
MANAGER_CHECK = 1.0


def add_parser(sub) -> None:
    p = sub.add_parser("job", help="launch or execute a job")
    jobs = p.add_subparsers(dest="job_command", metavar="COMMAND")
    jobs.required = True

    launch = jobs.add_parser(
        "launch",
        help="queue a run through the running manager; prints its id",
        description="Queue a run of JOB in the running manager (`wsm up`) and print its id.",
    )
    targets.add_target_args(launch, code=False)
    _run_args(launch)
    launch.add_argument(
        "--wait", action="store_true", help="follow the run to its end; exit 0 on SUCCESS, else 1"
    )
    launch.set_defaults(_job=_launch)

    execute = jobs.add_parser(
        "execute",
        help="run a job now, in the foreground, in its location's environment",
        description="Run JOB now in its location's interpreter and environment, print its "
        "output and log lines as they come, and record it like any run. Exit 0 on SUCCESS, "
        "1 otherwise; Ctrl-C cancels it.",
    )
    targets.add_target_args(execute)
    _run_args(execute)
    execute.set_defaults(_job=_execute)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-l", "--location", metavar="LOCATION", help="the job's location")
    p.add_argument("job", metavar="JOB")
    p.add_argument(
        "--config",
        metavar="JSON|@FILE",
        help="run config: a JSON object, or @FILE holding JSON or YAML",
    )
    p.add_argument(
        "--tag", action="append", default=[], metavar="K=V", help="a run tag (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    return int(args._job(args) or 0)


# -- arguments ----------------------------------------------------------------------------


def run_config(text: Optional[str]) -> Dict[str, Any]:
    """`--config`: a JSON object, or @FILE (JSON, or YAML for .yaml/.yml), of plain JSON
    values (no NaN or Infinity: `check_run_input`); None (no --config) is `{}`. Anything
    else, an empty text or file included, is a one-line error and exit 2."""
    if text is None:
        return {}
    # what was given, to name it in a message (a long inline config cut short)
    given = f"--config {text if len(text) <= 60 else text[:57] + '...'}" if text else "--config ''"
    if text.startswith("@"):
        name = text[1:]
        if not name:
            targets.fail("--config @: give a file after the @ (--config @FILE)")
        path = Path(name)
        try:
            with path.open("rb") as f:
                data = f.read(CONFIG_FILE_LIMIT + 1)  # @/dev/zero must not fill the memory
            if len(data) > CONFIG_FILE_LIMIT:
                targets.fail(f"{given}: larger than {CONFIG_FILE_LIMIT >> 20} MiB")
            text = data.decode("utf-8")
        except OSError as exc:
            targets.fail(f"{given}: {exc.strerror or exc}")
        except UnicodeDecodeError as exc:
            targets.fail(
                f"{given}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                f"{exc.start})"
            )
        if not text.strip():
            targets.fail(f"{given}: empty; the run config must be an object, e.g. {{}}")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                targets.fail(f"{given}: not valid YAML: {' '.join(str(exc).split())}")
            except RecursionError:
                targets.fail(f"{given}: nested too deeply")
            return _mapping(value, given)
    if not text.strip():
        targets.fail(f"{given}: empty; the run config must be a JSON object, e.g. '{{}}'")
    try:
        value = json.loads(text)
    except ValueError as exc:
        targets.fail(f"{given}: not valid JSON: {exc}")
    except RecursionError:
        targets.fail(f"{given}: nested too deeply")
    return _mapping(value, given)


def _mapping(value: Any, source: str) -> Dict[str, Any]:
    from workspace_manager.storage.records import BadRunInput, check_run_input

    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        targets.fail(f"{source}: the run config must be an object, got {kind}")
    try:
        check_run_input(value, {})
    except BadRunInput as exc:
        targets.fail(f"{source}: {exc}")
    return value


def run_tags(items: List[str]) -> Dict[str, str]:
    """`--tag K=V`..., in order (a later one wins), with the `wsm/...` tags wsm reads
    checked (`runs.queue.check_tags`: priority an integer, timeout and retries numbers).
    A bad one is a one-line error and exit 2, as any bad argument (argparse's usage code)."""
    from workspace_manager.runs.queue import check_tags
    from workspace_manager.storage.records import check_run_input

    tags: Dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            targets.fail(f"--tag {item!r}: expected KEY=VALUE")
        tags[key] = value
    try:
        check_run_input({}, tags)  # bytes that were not UTF-8 on the command line
        check_tags(tags)
    except ValueError as exc:
        targets.fail(f"--tag: {exc}")
    return tags


# -- launch -------------------------------------------------------------------------------


def _launch(args: argparse.Namespace) -> int:
    from workspace_manager.protocol.errors import RemoteError

    params = {
        "location": args.location,
        "job": args.job,
        "run_config": run_config(args.config),
        "tags": run_tags(args.tag),
        "origin": {"kind": "manual", "user": _user(), "host": socket.gethostname(), "via": "cli"},
    }
    client, record = control_client.connect(args)
    if client is None:
        targets.fail(
            f"no manager is running for {targets.describe(args)} (start one with `wsm up`, "
            "or run the job here with `wsm job execute`)",
            control_client.EXIT_NO_MANAGER,
        )
    try:
        with client:
            run = client.call("launch_run", params)
    except RemoteError as exc:
        targets.fail(exc.message, EXIT_FAILED)
    print(run["run_id"], flush=True)
    if not args.wait:
        return 0
    return _follow(record.key, run["run_id"])


def _follow(key: str, run_id: str) -> int:
    """Print the run's lines as they are stored until it is final; 0 on SUCCESS."""
    from workspace_manager.storage.paths import open_storage
    from workspace_manager.supervisor.runtime import find_manager

    store = open_storage(key, create=False)
    after = 0
    checked = time.monotonic()
    try:
        while True:
            manager_gone = False
            if time.monotonic() - checked > MANAGER_CHECK:
                checked = time.monotonic()
                manager_gone = find_manager(key) is None
            record = store.get_run(run_id)  # after the check: a run it ended before exiting
            while True:
                lines = store.read_logs(run_id, after_seq=after)
                for line in lines:
                    print_line(line)
                    after = line.seq
                if len(lines) < 1000:
                    break
            if record.is_final:
                return verdict(record)
            if manager_gone:  # killed: nothing writes to the run until `wsm up` marks it
                print(
                    f"wsm: the manager is gone (killed?) while run {run_id} was "
                    f"{record.status}; the next `wsm up` marks it FAILURE",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            time.sleep(0.1)
    except KeyboardInterrupt:
        print(f"\nwsm: stopped following run {run_id}; it goes on", file=sys.stderr)
        return 130
    finally:
        store.close()


def verdict(record: Any) -> int:
    """Say how the run ended (with its traceback when it failed): 0 on SUCCESS, else 1."""
    if record.status != "SUCCESS" and record.traceback:
        print(str(record.traceback).rstrip("\n"), file=sys.stderr)
    print(f"run {record.run_id}: {record.status}", file=sys.stderr, flush=True)
    return 0 if record.status == "SUCCESS" else EXIT_FAILED


def print_line(line: Any) -> None:
    """One stored line for a terminal: stdout and stderr as the job wrote them, a log
    record as `LEVEL message`, what wsm says as `wsm: ...` on stderr."""
    if line.stream == "stdout":
        print(line.text, flush=True)
    elif line.stream == "log":
        print(f"{line.level or 'INFO'} {line.text}", flush=True)
    elif line.stream == "stderr":
        print(line.text, file=sys.stderr, flush=True)
    else:
        print(f"wsm: {line.text}", file=sys.stderr, flush=True)


# -- execute ------------------------------------------------------------------------------


def _execute(args: argparse.Namespace) -> int:
    from workspace_manager.runs.execute_start import ExecuteError, find_location, start_execute

    if args.location and (args.python_file or args.module_name):
        targets.fail("-l goes with -w (a workspace); -f and -m have one location")
    config, tags = run_config(args.config), run_tags(args.tag)  # before any slow step
    workspace, ident = targets.load(args)
    location = _pick_location(args, workspace)
    start = None
    try:
        located = find_location(workspace, location)
        if located.environment is None:
            # The run's process starts now, before the imports below (asyncio, the
            # coordinator, the storage: ~100 ms), and loads the code meanwhile.
            from workspace_manager.envs.resolve import InterpreterError, plain_interpreter

            try:
                python = plain_interpreter(located)
            except InterpreterError as exc:
                raise ExecuteError(str(exc)) from None
            start = start_execute(workspace, located, python, args.job, config, tags)
    except ExecuteError as exc:
        targets.fail(str(exc), EXIT_FAILED)
    # imported here, as the rest: `wsm job launch` runs no event loop
    import asyncio

    from workspace_manager.runs.execute import OpeningStorage, execute
    from workspace_manager.storage.base import StorageError
    from workspace_manager.storage.paths import open_storage
    from workspace_manager.supervisor.runtime import manager_key

    def envs() -> Any:
        # imported here: only a location with an environment needs the cache (~30 ms)
        from workspace_manager.envs.progress import console_reporter
        from workspace_manager.envs.service import EnvironmentService

        return EnvironmentService(reporter=console_reporter(sys.stderr))

    async def go() -> Any:
        store = OpeningStorage(lambda: open_storage(manager_key(ident), create=True))
        try:
            return await execute(
                workspace,
                store,
                location,
                args.job,
                run_config=config,
                tags=tags,
                on_line=print_line,
                envs=envs,
                start=start,
            )
        finally:
            await store.close()

    try:
        record = asyncio.run(go())
    except (ExecuteError, ValueError, StorageError) as exc:
        targets.fail(str(exc), EXIT_FAILED)
    return verdict(record)


def _pick_location(args: argparse.Namespace, workspace: Any) -> str:
    """-l, the only location, or the one whose code has JOB as a running manager knows it;
    otherwise one line: the manager's answer when one runs (as `wsm job launch`'s, exit 1),
    else why -l is needed (exit 2)."""
    names = [loc.name for loc in workspace.locations]
    if args.location:
        if args.location not in names:
            targets.fail(f"no location named {args.location!r} (known: {', '.join(names)})")
        return str(args.location)
    if len(names) == 1:
        return names[0]
    having = _locations_with_job(args, names)
    if having is None:
        targets.fail(
            f"the workspace has {len(names)} locations ({', '.join(names)}) and no manager "
            f"is running to say which has job {args.job!r}: name its location with -l"
        )
    found, not_loaded = having
    if len(found) == 1:
        return found[0]
    if found:
        targets.fail(
            f"job {args.job!r} is in several locations ({', '.join(found)}); name one with -l",
            EXIT_FAILED,
        )
    hint = f" ({'; '.join(not_loaded)})" if not_loaded else ""
    targets.fail(f"no job named {args.job!r} in any loaded location{hint}", EXIT_FAILED)


def _locations_with_job(
    args: argparse.Namespace, names: List[str]
) -> Optional[Tuple[List[str], List[str]]]:
    """Asked of a running manager: (the locations whose loaded code has the job, a note for
    each location it has no code of: "x is error: ..." as it says); None when none runs."""
    from workspace_manager.protocol.errors import RemoteError

    client, _ = control_client.connect(args, timeout=5.0)
    if client is None:
        return None
    found: List[str] = []
    broken: List[str] = []
    starting: List[str] = []
    states: Dict[str, Any] = {}
    with client:
        for name in names:
            try:
                snapshot = client.call("snapshot", {"location": name})
            except RemoteError:
                broken.append(name)
                continue
            for repo in snapshot.get("repositories") or []:
                if any(j.get("name") == args.job for j in repo.get("jobs") or []):
                    found.append(name)
                    break
        if broken:  # worded as the manager's own refusal (runs/coordinator.find_job)
            states = client.call("status", {}).get("locations") or {}
    notes = []
    for name in broken:
        state = states.get(name) or {}
        if state.get("state") in ("error", "failed", "stopped"):
            error = next(iter(str(state.get("error") or "").strip().splitlines()), "")
            notes.append(f"location {name!r} is {state['state']}" + (f": {error}" if error else ""))
        else:
            starting.append(name)
    if starting:
        notes.append(f"{', '.join(starting)} not loaded yet")
    return found, notes


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())

"""`wsm up`: the foreground manager."""

from __future__ import annotations

import argparse
import asyncio
import os

from workspace_manager.cli import targets


def add_parser(sub) -> None:
    p = sub.add_parser(
        "up",
        help="start and supervise every location",
        description="Build environments, start every location in its own process and "
        "supervise it until Ctrl-C, SIGTERM or `wsm down`.",
    )
    targets.add_target_args(p)
    p.add_argument(
        "--health",
        metavar="HOST:PORT",
        help="serve /livez /readyz /status on HOST:PORT (':0' picks a free port)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: human lines (default); json: one JSON object per event, for log shippers",
    )
    p.add_argument(
        "--api-token-env",
        metavar="VAR",
        help="the environment variable holding the token that writes to the JSON API from "
        "other hosts must send (Authorization: Bearer TOKEN); without it only loopback writes",
    )
    p.add_argument(
        "--no-daemon",
        action="store_true",
        help="do not run schedules and sensors (runs can still be launched)",
    )
    p.add_argument(
        "--frozen-envs",
        action="store_true",
        help="never build an environment: use those `wsm env build` made (the cache may be "
        "read-only); a location whose environment is missing is in error",
    )
    p.add_argument(
        "--quiet-output",
        action="store_true",
        help="do not echo the locations' stdout/stderr (still kept in their logs)",
    )


def run(args: argparse.Namespace) -> int:
    from workspace_manager.cli.console import make_console
    from workspace_manager.supervisor import runtime
    from workspace_manager.supervisor.manager import Manager, ManagerRunning
    from workspace_manager.supervisor.runtime import RuntimeDirError

    health = None
    if args.health:
        from workspace_manager.http.listen import parse_listen

        try:
            health = parse_listen(args.health)
        except ValueError as exc:
            targets.fail(f"--health: {exc}")
    api_token = None
    if args.api_token_env:
        api_token = os.environ.get(args.api_token_env)
        if not api_token:
            targets.fail(f"--api-token-env: the variable {args.api_token_env} is not set or empty")
        if not args.health:
            targets.fail("--api-token-env needs --health HOST:PORT (the API is served there)")
    workspace, ident = targets.load(args)
    running = runtime.find_manager(runtime.manager_key(ident))
    if running is not None:  # said before "starting ..." (the lock decides, in the manager)
        targets.fail(str(ManagerRunning(running)), code=1)
    console = make_console(args.log_format, show_output=not args.quiet_output)
    console.width(loc.name for loc in workspace.locations)
    manager = Manager(
        workspace,
        ident,
        events=console.sink(),
        health=health,
        reread=lambda: targets.read_workspace(args),
        build_reporter=console.build_reporter(),
        runs=True,
        api_token=api_token,
        secret_vars=(args.api_token_env,) if args.api_token_env else (),
        daemon=not args.no_daemon,
        frozen_envs=args.frozen_envs,
    )
    if hasattr(console, "attach"):
        console.attach(lambda name: manager.locations.get(name))
    _prune_state(console)
    console.message(
        f"starting {len(workspace.locations)} location"
        f"{'' if len(workspace.locations) == 1 else 's'} from {targets.describe(args)}"
    )
    try:
        return asyncio.run(manager.run())
    except ManagerRunning as exc:
        targets.fail(str(exc), code=1)
    except RuntimeDirError as exc:
        targets.fail(f"runtime directory: {exc}", code=1)
    except OSError as exc:
        targets.fail(str(exc), code=1)


def _prune_state(console) -> None:  # type: ignore[no-untyped-def]
    """Remove the state folders of workspaces and files that are gone (never one a manager
    holds); a problem here never stops `wsm up`."""
    from workspace_manager.supervisor import statedirs

    try:
        removed = statedirs.prune()
    except OSError as exc:
        console.message(f"could not prune old state folders: {exc}")
        return
    if removed:
        console.message(
            f"removed {len(removed)} state folder{'' if len(removed) == 1 else 's'} of "
            f"workspaces or files that no longer exist (`wsm state prune`)"
        )

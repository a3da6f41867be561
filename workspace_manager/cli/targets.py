"""What a command works on: `-w FILE`, or `-f PY [-a ATTR]`, or `-m MOD`.

The same arguments give the same manager identity, so `wsm status -f repo.py` finds the
`wsm up -f repo.py` that is running.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Optional, Tuple

if TYPE_CHECKING:  # every command imports this module: it imports what it uses when used
    from workspace_manager.supervisor.runtime import ManagerRecord
    from workspace_manager.workspace.model import Workspace

DEFAULT_WORKSPACE = "workspace.yaml"
EXIT_INVALID = 2


def add_target_args(
    parser: argparse.ArgumentParser, code: bool = True, short_file: bool = True
) -> None:
    """-w, and (shown with ``code``) -f/-a/-m; commands that talk to a running manager accept
    them quietly so that `wsm status -f repo.py` finds `wsm up -f repo.py`."""
    parser.add_argument(
        "-w", "--workspace", metavar="FILE", help=f"workspace file (default: ./{DEFAULT_WORKSPACE})"
    )

    def shown(text: str) -> str:
        return text if code else argparse.SUPPRESS

    file_flags = ["-f", "--python-file"] if short_file else ["--python-file"]
    parser.add_argument(
        *file_flags, metavar="PY", help=shown("load one Python file as the only location")
    )
    parser.add_argument(
        "-a", "--attribute", metavar="ATTR", help=shown("with -f/-m: the repository to load")
    )
    parser.add_argument(
        "-m", "--module-name", metavar="MOD", help=shown("load one module as the only location")
    )


class UsageError(Exception):
    """Arguments that do not fit together; shown as one line, exit 2."""


def identity(args: argparse.Namespace) -> str:
    """A stable string naming what the manager runs (hashed into the runtime dir key)."""
    if args.python_file and args.module_name:
        raise UsageError("-f and -m cannot be used together")
    if (args.python_file or args.module_name) and args.workspace:
        raise UsageError("-w cannot be combined with -f or -m")
    if args.attribute and not (args.python_file or args.module_name):
        raise UsageError("-a needs -f or -m")
    if args.python_file:
        return f"file:{os.path.abspath(args.python_file)}#{args.attribute or ''}"
    if args.module_name:
        return f"module:{args.module_name}#{args.attribute or ''}@{os.getcwd()}"
    return f"workspace:{os.path.abspath(args.workspace or DEFAULT_WORKSPACE)}"


def read_workspace(args: argparse.Namespace) -> Workspace:
    """The workspace the arguments name; raises UsageError or WorkspaceError."""
    from workspace_manager.workspace.load import adhoc_workspace, load_workspace

    identity(args)  # checks the combination of arguments
    if args.python_file:
        return adhoc_workspace(python_file=args.python_file, attribute=args.attribute)
    if args.module_name:
        return adhoc_workspace(module_name=args.module_name, attribute=args.attribute)
    return load_workspace(Path(args.workspace or DEFAULT_WORKSPACE))


def load(args: argparse.Namespace) -> Tuple[Workspace, str]:
    """Load the workspace named by the arguments; on bad input print one line per problem
    and exit 2."""
    from workspace_manager.workspace.errors import WorkspaceError

    try:
        return read_workspace(args), identity(args)
    except UsageError as exc:
        fail(str(exc))
    except WorkspaceError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def find_running(args: argparse.Namespace) -> Optional[ManagerRecord]:
    """The manager for these arguments. With no -w/-f/-m, the one for ./workspace.yaml; only
    when there is no ./workspace.yaml here, the only manager running (so `wsm status` works
    from anywhere, but `wsm down` in a workspace's folder never stops another one)."""
    from workspace_manager.supervisor import runtime

    try:
        ident = identity(args)
    except UsageError as exc:
        fail(str(exc))
    record = runtime.find_manager(runtime.manager_key(ident))
    if record is not None:
        return record
    explicit = args.workspace or args.python_file or args.module_name
    if not explicit and not os.path.exists(DEFAULT_WORKSPACE):
        running = list(runtime.running_managers())
        if len(running) == 1:
            return running[0]
    return None


def describe(args: argparse.Namespace) -> str:
    if args.python_file:
        return args.python_file
    if args.module_name:
        return f"module {args.module_name}"
    return args.workspace or DEFAULT_WORKSPACE


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    print(f"wsm: {message}", file=sys.stderr)
    raise SystemExit(code)

"""What a command works on: `-w FILE`, or `-f PY [-a ATTR]`, or `-m MOD`.

The same arguments give the same manager identity, so `wsm status -f repo.py` finds the
`wsm up -f repo.py` that is running.
"""

from __future__ import annotations

import argparse
import os
import sys

# typing too is for the type checkers only (they take any name TYPE_CHECKING as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # every command imports this module: it imports what it uses when used
    from typing import NoReturn, Optional, Tuple

    from workspace_manager.supervisor.runtime import ManagerRecord
    from workspace_manager.workspace.model import Workspace

DEFAULT_WORKSPACE = "workspace.yaml"
EXIT_INVALID = 2


def add_target_args(
    parser: argparse.ArgumentParser, code: bool = True, short_file: bool = True
) -> None:
    """-w FILE | -f PY [-a ATTR] | -m MOD, shown in every command's --help. With ``code``
    the command loads that code itself; without, they name the manager (and its records)
    that `wsm up` with the same arguments runs, so `wsm status -f repo.py` finds
    `wsm up -f repo.py`. ``short_file=False`` (commands with -F/--follow) gives only
    --python-file, and refuses -f with one line: it must never mean two things."""
    parser.add_argument(
        "-w", "--workspace", metavar="FILE", help=f"workspace file (default: ./{DEFAULT_WORKSPACE})"
    )
    if code:
        file_help = "load one Python file as the only location"
        attr_help = "with -f/-m: the repository to load"
        module_help = "load one module as the only location"
    else:
        file_help = "the manager of `wsm up -f PY` (instead of -w)"
        attr_help = f"with {'-f' if short_file else '--python-file'}/-m: the ATTR given to `wsm up`"
        module_help = "the manager of `wsm up -m MOD` (instead of -w)"
    if short_file:
        parser.add_argument("-f", "--python-file", metavar="PY", help=file_help)
    else:
        parser.add_argument("--python-file", metavar="PY", help=file_help)
        parser.add_argument(
            "-f", dest="_short_f", action=_RefuseShortF, nargs=0, help=argparse.SUPPRESS
        )
    parser.add_argument("-a", "--attribute", metavar="ATTR", help=attr_help)
    parser.add_argument("-m", "--module-name", metavar="MOD", help=module_help)


class _RefuseShortF(argparse.Action):
    """-f where -F is --follow: --python-file in most commands, `tail -f` to many users."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[no-untyped-def]
        parser.error(
            f"-f is not an option of `{parser.prog}`: use -F/--follow to keep printing new "
            "lines, or --python-file PY to name a manager started with `wsm up -f PY`"
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
    return load_workspace(args.workspace or DEFAULT_WORKSPACE)


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

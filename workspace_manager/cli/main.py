"""`wsm` entry point: one subcommand per module, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from workspace_manager.cli.terminal import ArgumentParser
from workspace_manager.version import __version__

# typing only for the type checkers (they take any name TYPE_CHECKING as true): `wsm
# --version` needs nothing of it, and its import costs ~3 ms
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

#: command -> module in this package (``list`` would shadow the builtin, hence ``listing``).
COMMANDS = {
    "validate": "validate",
    "up": "up",
    "list": "listing",
    "status": "status",
    "down": "down",
    "reload": "reload",
    "logs": "logs",
    "env": "env",
    "state": "state",
    "serve": "serve",
    "run": "run",
    "schedule": "schedule",
    "sensor": "sensor",
    "job": "job",
}


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The parser of every command, or (`only`) of that one command: a command then imports
    its own module only, not the others' (`wsm job execute` starts in the time of a run).
    `only=""` names no command: `wsm --version` and a missing or unknown command import no
    command's module, and `-h` builds the full parser when it is asked for."""
    parser = ArgumentParser(
        prog="wsm",
        description="Multi-environment workspace manager: each code repository in its own "
        "process, under its own Python, supervised.",
        add_help=only is None,
    )
    if only is not None:
        # the top-level help lists every command's one-line help, which each module gives
        parser.add_argument(
            "-h", "--help", action=_FullHelp, nargs=0, help="show this help message and exit"
        )
    parser.add_argument("--version", action="version", version=f"wsm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command, module_name in COMMANDS.items():
        if only is not None and command != only:
            # With a command, argparse never looks at another one's parser. Without one
            # (`wsm --version`, `wsm bogus`), the others are named in errors: bare stubs, as
            # each parser costs ~0.5 ms (argparse's gettext looks for catalogues on disk at
            # every help string, a -h included).
            if not only:
                sub.add_parser(command, add_help=False)
            continue
        module = importlib.import_module(f"workspace_manager.cli.{module_name}")
        module.add_parser(sub)
        sub.choices[command].set_defaults(_run=module.run)
    return parser


class _FullHelp(argparse.Action):
    """`wsm -h` on a parser built for one command (or none): the help of the full parser."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[no-untyped-def]
        build_parser().print_help()
        parser.exit()


def main(argv: Optional[List[str]] = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = words[0] if words and words[0] in COMMANDS else ""
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`wsm list | head`): not an error of ours. As the Python docs
        # advise (signal module, "Note on SIGPIPE"), point stdout at /dev/null so the final
        # flush at exit does not raise again, and exit as a shell reports SIGPIPE.
        import signal

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())

"""`wsm validate [-w FILE]`: schema and semantic checks of a workspace; nothing is started.

Exit 0 and a one-line summary when valid; otherwise every problem on stderr as
`PATH:LINE:COLUMN: message`, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, List, Optional

from ..workspace.errors import WorkspaceError
from ..workspace.load import load_workspace

EXIT_INVALID = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-w",
        "--workspace",
        default="workspace.yaml",
        metavar="FILE",
        help="the workspace file (default: ./workspace.yaml)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `validate` on the `wsm` command's subparsers."""
    parser = subparsers.add_parser(
        "validate",
        help="check workspace.yaml without starting anything",
        description="Check a workspace file (schema, files, names) without starting anything.",
    )
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        workspace = load_workspace(args.workspace)
    except WorkspaceError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_INVALID
    for warning in workspace.warnings:
        print(f"{warning} (warning)", file=sys.stderr)
    count = len(workspace.locations)
    noun = "location" if count == 1 else "locations"
    print(f"{args.workspace}: {count} {noun} OK")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Stand-alone entry point: `python -m workspace_manager.cli.validate [-w FILE]`."""
    parser = argparse.ArgumentParser(prog="wsm validate", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

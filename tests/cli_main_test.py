"""`wsm`'s parser built for one command (cli/main.py imports only that command's module):
every command parses, including two commands of one module (`schedule` and `sensor`)."""

from __future__ import annotations

import pytest

from workspace_manager.cli.main import COMMANDS, build_parser


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_parser_of_each_command_alone_builds(command: str) -> None:
    parser = build_parser(command)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args([command, "--help"])
    assert exit_.value.code == 0

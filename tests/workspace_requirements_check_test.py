"""Requirements pip would refuse are found before a build; what pip accepts passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from workspace_manager.workspace.requirements_check import (
    pip_args_problems,
    requirement_problem,
    requirements_file_problems,
)


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    (tmp_path / "libs" / "mylib").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "pkg-1.0-py3-none-any.whl").write_text("")
    (tmp_path / "constraints.txt").write_text("requests<3\n")
    return tmp_path


# Every shape pip installs: none of these may be refused (a false error blocks a good workspace).
ACCEPTED = [
    "requests",
    "requests>=2,<3",
    "Foo_Bar[extra1,extra2]==1.0; python_version < '3.12'",
    "pkg @ https://example.com/pkg-1.0-py3-none-any.whl",
    "pkg@https://example.com/pkg.tar.gz",
    "pkg @ git+https://github.com/team/pkg.git@v1.0",
    "git+https://github.com/team/pkg.git@main#egg=pkg",
    "https://example.com/pkg-1.0-py3-none-any.whl",
    "-e git+https://github.com/team/pkg.git#egg=pkg",
    "-e ./libs/mylib",
    "--editable=libs/mylib[dev]",
    "-e .",
    ".",
    "./libs/mylib",
    "./libs/mylib[dev]",
    "libs/mylib",
    "pkg-1.0-py3-none-any.whl",
    "file:./libs/mylib",
    "--pre",
    "--index-url=https://pypi.example/simple",
    "-ihttps://pypi.example/simple",
    "--constraint=constraints.txt",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_what_pip_installs_is_accepted(text: str, base: Path) -> None:
    assert requirement_problem(text, base) is None


REFUSED = {
    "fincalc>==": "'fincalc>==' is not a valid requirement (PEP 508): ",
    "x[": "'x[' is not a valid requirement (PEP 508): ",
    "two words": "'two words' is not a valid requirement (PEP 508): ",
    "   ": "is empty",
    "./libs/nope": "no such file or folder './libs/nope' (looked for {base}/libs/nope)",
    "-e ./nope": "no such file or folder './nope' (looked for {base}/nope)",
    "-e": "-e needs a value",
    "missing-2.0.tar.gz": "no such file or folder 'missing-2.0.tar.gz'",
    "pkg @ ./libs/mylib": "'./libs/mylib' is not a URL",
    "pkg @ file:///nonexistent/wsm/pkg": "no such file or folder 'file:///nonexistent/wsm/pkg'",
    "https:///no-host": "'https:///no-host' is not a URL",
    "--index-url https://x/simple": "reaches the installer as one argument",
    "-r requirements.txt": "cannot be a requirement: give the file as requirements_file",
    "--index-url": "'--index-url' needs a value: write it as --index-url=VALUE",
    "-i": "'-i' needs a value: write it as -iVALUE",
    "--requirement=nope.txt": "no such file 'nope.txt'",
}


@pytest.mark.parametrize("text", sorted(REFUSED))
def test_what_pip_refuses_is_found(text: str, base: Path) -> None:
    problem = requirement_problem(text, base)
    assert problem is not None
    assert REFUSED[text].format(base=base).split(" (looked")[0] in problem


def test_pip_args(base: Path) -> None:
    good = ["--find-links", "wheels/", "--index-url", "https://x/simple", "-c", "constraints.txt"]
    assert pip_args_problems(good, base) == []
    # find-links to a missing folder only makes pip warn; a missing -r or -c file stops it.
    assert pip_args_problems(["-f", "no_wheels/", "--pre"], base) == []
    assert pip_args_problems(["-r", "nope.txt", "--constraint=gone.txt", "-e"], base) == [
        (1, f"-r nope.txt: no such file 'nope.txt' (looked for {base}/nope.txt)"),
        (2, f"--constraint=gone.txt: no such file 'gone.txt' (looked for {base}/gone.txt)"),
        (3, "-e needs a value after it"),
    ]


def test_requirements_files_line_by_line(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSM_TEST_LIBS", str(base / "libs"))
    (base / "reqs").mkdir()
    (base / "reqs" / "nested.txt").write_text("bad>==\n")
    main = base / "reqs" / "main.txt"
    main.write_text(
        "# comment\n"
        "requests>=2 --hash=sha256:00\n"
        "--index-url https://pypi.example/simple\n"  # in a file, options take their value
        "-r nested.txt\n"  # relative to the file that names it, as pip does
        "-c missing.txt\n"
        "-e ./libs/mylib\n"
        "-e ${WSM_TEST_LIBS}/mylib\n"  # pip expands ${VAR} in requirements files
        "./libs/nope \\\n"
        "  # continued\n"
        "-r main.txt\n"  # a cycle is read once
    )
    assert requirements_file_problems(main, base) == [
        f"{base}/reqs/nested.txt:1: 'bad>==' is not a valid requirement (PEP 508): "
        "Expected semicolon (after name with no version specifier) or end",
        f"{main}:5: no such file 'missing.txt' (looked for {base}/reqs/missing.txt)",
        f"{main}:8: no such file or folder './libs/nope' (looked for {base}/libs/nope)",
    ]

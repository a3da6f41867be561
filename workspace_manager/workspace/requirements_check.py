"""What pip would refuse in `environment`, found before anything is built.

A requirement is one of: a PEP 508 requirement (`pkg>=1.0`, `pkg[extra]; python_version<'3.12'`,
`pkg @ https://...`), a URL pip installs (`git+https://...`, `https://.../x.whl`), a local
path that exists (`./libs/x`, `x.whl`), `-e PATH_OR_VCS_URL`, or a one-argument installer
option (`--pre`, `--index-url=URL`). Local paths resolve against the location's working
directory, as `envs.requirements` resolves them for the build. Requirements files are read
line by line as pip reads them (options, `-r`/`-c` relative to the naming file).
Parsing follows PEP 508 through `packaging`, the library pip itself vendors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Sequence, Set, Tuple

from workspace_manager.envs.requirements import (
    FILE_OPTIONS,
    PATH_OPTIONS,
    absolute,
    logical_lines,
    looks_like_path,
)

from .schema import quote

_EXTRAS = re.compile(r"^(.*?)(\[[^\]]*\])$")
_VCS = ("git+", "hg+", "svn+", "bzr+")
_ENV_VAR = re.compile(r"\$\{([A-Z0-9_]+)\}")  # the only form pip expands
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar")
# pip options that name a file pip must open; -f/--find-links only warns when missing.
_MUST_EXIST = FILE_OPTIONS | {"-e", "--editable"}
# `pip install` options that take a value (pip 24's list; uv's `pip install` reads the same
# names): alone, as the last argument, pip stops with "option requires 1 argument".
_TAKES_VALUE = PATH_OPTIONS | {
    "-i",
    "--index-url",
    "--extra-index-url",
    "--trusted-host",
    "--no-binary",
    "--only-binary",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--src",
    "--upgrade-strategy",
    "-C",
    "--config-settings",
    "--global-option",
    "--progress-bar",
    "--log",
    "--proxy",
    "--retries",
    "--timeout",
    "--exists-action",
    "--cert",
    "--client-cert",
    "--cache-dir",
    "--use-feature",
    "--use-deprecated",
    "--report",
    "--keyring-provider",
}


def _is_url(text: str) -> bool:
    return "://" in text or text.startswith(_VCS) or text.startswith("file:")


def _local_problem(raw: str, base: Path, what: str = "file or folder") -> Optional[str]:
    """A local path (extras like `[dev]` allowed at the end) that does not exist."""
    match = _EXTRAS.match(raw)
    path = match.group(1) if match else raw
    full = absolute(path, base)
    if os.path.exists(full):
        return None
    return f"no such {what} {quote(raw)} (looked for {full})"


def _url_problem(url: str, base: Path) -> Optional[str]:
    if url.startswith("file:"):
        return _local_problem(url, base)
    if url.startswith(_VCS) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s]", url):
        return None
    return f"{quote(url)} is not a URL (file:///path, https://..., git+https://...)"


def _target_problem(target: str, base: Path, flag: str) -> Optional[str]:
    """The value of -e / -r / -c: a URL, or a local path that must exist."""
    if not target:
        return f"{flag} needs a value"
    if _is_url(target):
        return None if flag in ("-e", "--editable") else _url_problem(target, base)
    return _local_problem(target, base, "file" if flag in FILE_OPTIONS else "file or folder")


def requirement_problem(text: str, base: Path) -> Optional[str]:
    """Why pip would refuse the item `text` of `environment.requirements`, or None.

    The item reaches pip as one argument, so an option with a separate value cannot work.
    """
    item = text.strip()
    if not item:
        return "is empty"
    for flag in ("-e", "--editable"):
        if item == flag or item.startswith((flag + " ", flag + "=")):
            return _target_problem(item[len(flag) + 1 :].strip(), base, flag)
    if item.startswith("-"):
        return _option_problem(item, base)
    if item.startswith(_VCS) or item.startswith("file:") or _SCHEME.match(item):
        return _url_problem(item, base)  # a bare URL, which pip takes as a requirement
    if "@" in item and not looks_like_path(item.split("@", 1)[0]):
        return _pep508_problem(item, base)
    if looks_like_path(item) or item.lower().endswith(_ARCHIVES):
        return _local_problem(item, base)
    return _pep508_problem(item, base)


def _pep508_problem(item: str, base: Path) -> Optional[str]:
    # imported here: ~20 ms that a workspace without requirements never pays
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(item)
    except InvalidRequirement as error:
        reason = str(error).splitlines()[0] if str(error) else "cannot be parsed"
        return f"{quote(item)} is not a valid requirement (PEP 508): {reason}"
    if req.url is not None:
        return _url_problem(req.url, base)
    return None


def _option_problem(item: str, base: Path) -> Optional[str]:
    option, eq, value = item.partition("=")
    if any(c.isspace() for c in item):
        head = item.split(None, 1)[0]
        if head in FILE_OPTIONS:
            return (
                f"{quote(item)} cannot be a requirement: give the file as requirements_file, "
                f'or as two items of pip_args: ["{head}", "{item.split(None, 1)[1]}"]'
            )
        return (
            f"{quote(item)} reaches the installer as one argument, which it cannot read; "
            f'put the option in pip_args as two items: ["{head}", "{item.split(None, 1)[1]}"]'
        )
    if option in _TAKES_VALUE and not eq:
        if option.startswith("--"):
            return f"{quote(item)} needs a value: write it as {option}=VALUE"
        return f"{quote(item)} needs a value: write it as {option}VALUE"
    if eq and option in _MUST_EXIST:
        return _target_problem(value, base, option)
    return None


def pip_args_problems(args: Sequence[str], base: Path) -> List[Tuple[int, str]]:
    """(index, reason) for each item of `pip_args` pip would refuse: a file option
    (-r, -c, -e) naming a local path that does not exist, or an option missing its value."""
    problems: List[Tuple[int, str]] = []
    expect: Optional[str] = None
    for index, arg in enumerate(args):
        if expect is not None:
            problem = _target_problem(arg, base, expect) if expect in _MUST_EXIST else None
            if problem is not None:
                problems.append((index, f"{expect} {arg}: {problem}"))
            expect = None
            continue
        option, eq, value = arg.partition("=")
        if eq and option.startswith("--") and option in _MUST_EXIST:
            problem = _target_problem(value, base, option)
            if problem is not None:
                problems.append((index, f"{option}={value}: {problem}"))
        elif arg in _TAKES_VALUE:
            expect = arg
    if expect is not None:
        problems.append((len(args) - 1, f"{expect} needs a value after it"))
    return problems


def _expand(line: str) -> str:
    """pip replaces `${NAME}` in requirements files with the variable, when it is set."""
    return _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), m.group(0)), line)


def requirements_file_problems(
    path: Path, base: Path, _seen: Optional[Set[str]] = None
) -> List[str]:
    """Every line of a requirements file (and of the files it includes with -r / -c) that
    pip would refuse, as `FILE:LINE: reason`. `base` anchors local paths, as in the build."""
    seen: Set[str] = set() if _seen is None else _seen
    real = os.path.realpath(path)
    if real in seen:
        return []
    seen.add(real)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        return [f"{path}: cannot read it: {reason}"]
    problems: List[str] = []
    for number, raw in logical_lines(text):
        line = _expand(raw)
        where = f"{path}:{number}"
        tokens = line.split()
        head = tokens[0]
        option, eq, value = head.partition("=")
        if option in FILE_OPTIONS:
            target = value if eq else (tokens[1] if len(tokens) > 1 else "")
            if not target:
                problems.append(f"{where}: {option} needs a file after it")
            elif not _is_url(target):
                nested = Path(absolute(target, Path(path).parent))
                if not nested.is_file():
                    problems.append(f"{where}: no such file {quote(target)} (looked for {nested})")
                else:
                    problems += requirements_file_problems(nested, base, seen)
            continue
        if option in ("-e", "--editable"):
            target = value if eq else " ".join(tokens[1:])
            problem = _target_problem(target, base, option)
        elif head.startswith("-"):
            continue  # other options, with their values: pip reads them in a file
        else:
            # A requirement ends where its per-requirement options (--hash=...) begin.
            words = []
            for token in tokens:
                if token.startswith("-"):
                    break
                words.append(token)
            problem = requirement_problem(" ".join(words), base)
        if problem is not None:
            problems.append(f"{where}: {problem}")
    return problems

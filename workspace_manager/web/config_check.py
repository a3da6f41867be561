"""The launch form's check of a run config typed as JSON or YAML: text in, a JSON object
out, or one line saying where (line and column, 1-based) and what is wrong.

`POST /ui/config/check` (web/pages.py) answers with it before the page sends the run to
`POST /api/runs`, so a user sees a typo where they typed it, not a 400 from the API. The
check has no side effect; YAML is read with PyYAML's safe loader (no Python objects) and
the text is size-capped, so a hostile body costs little (PyYAML >= 6.0.4 also bounds
merge-key blow-ups; pyproject.toml)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional

from workspace_manager.storage.records import check_run_input, json_kind

#: The largest run config text checked, in bytes (the API's body limit is larger; a run
#: config typed into a form is far below this).
MAX_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True)
class ConfigCheck:
    """`config`: the run config as a JSON object when the text is good; else `error`, one
    line (`line L, column C: what`, or without a position when it has none)."""

    config: Optional[Dict[str, Any]] = None
    error: Optional[str] = None


def check_config_text(text: str) -> ConfigCheck:
    """Parse `text` as JSON when it starts with `{` or `[` (JSON's own messages are the
    clearer there), else as YAML; empty text is `{}`. The result must be a JSON object of
    plain JSON values (`storage.records.check_run_input`: no NaN, no dates, string keys)."""
    if len(text.encode("utf-8", "replace")) > MAX_CONFIG_BYTES:
        return ConfigCheck(error=f"the run config is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    stripped = text.strip()
    if not stripped:
        return ConfigCheck(config={})
    if stripped[0] in "{[":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return ConfigCheck(error=f"line {exc.lineno}, column {exc.colno}: {exc.msg} (JSON)")
        except RecursionError:
            return ConfigCheck(error="the run config is nested too deeply")
    else:
        parsed = _yaml(text)
        if isinstance(parsed, ConfigCheck):
            return parsed
        value = parsed
    if not isinstance(value, dict):
        return ConfigCheck(
            error=f"the run config must be an object (a mapping), got {json_kind(value)}"
        )
    try:
        check_run_input(value, {})
    except ValueError as exc:
        return ConfigCheck(error=str(exc))
    return ConfigCheck(config=value)


def _yaml(text: str) -> Any:
    """The YAML document of `text`, or a ConfigCheck with its error."""
    import yaml  # the manager's own dependency; imported here, at the first check

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if mark is None:
            return ConfigCheck(error=f"{what} (YAML)")
        return ConfigCheck(error=f"line {mark.line + 1}, column {mark.column + 1}: {what} (YAML)")
    except yaml.YAMLError as exc:
        return ConfigCheck(error=" ".join(str(exc).split()) + " (YAML)")
    except RecursionError:
        return ConfigCheck(error="the run config is nested too deeply")

"""execution_timezone checks, with zoneinfo when this interpreter can use it.

A repository's interpreter may lack a time zone database (no tzdata, no
/usr/share/zoneinfo); then names cannot be checked and are accepted as given,
rather than failing every schedule that names a zone.
"""

from __future__ import annotations

# zoneinfo (with sysconfig, struct) and datetime are imported on the first schedule that
# names a zone, not with the SDK (docs/architecture.md, "What a location imports").
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime as _dt
    from types import ModuleType
    from typing import Optional


def _zoneinfo_module() -> Optional[ModuleType]:
    """The zoneinfo module, or None where this interpreter has none."""
    try:
        import zoneinfo
    except ImportError:  # pragma: no cover - CPython >= 3.9 always has it
        return None
    return zoneinfo


def timezone_problem(name: str) -> Optional[str]:
    """Why `name` is not a usable IANA time zone, or None (also when it cannot be checked)."""
    if name == "UTC":
        return None
    _zoneinfo = _zoneinfo_module()
    if _zoneinfo is None:
        return None
    try:
        _zoneinfo.ZoneInfo(name)
    except ValueError as exc:  # a malformed key (absolute path, "..") or not a TZif file
        return f"not a valid time zone ({exc})"
    except _zoneinfo.ZoneInfoNotFoundError:
        if not _database_available():
            return None
        return "unknown time zone (use an IANA name such as 'Europe/Paris')"
    except Exception as exc:  # a corrupt zone file: report, do not crash the import
        return f"cannot load time zone: {exc}"
    return None


def get_timezone(name: Optional[str]) -> _dt.tzinfo:
    """The tzinfo for `name`; UTC when None or when no database can resolve it."""
    import datetime as _dt

    _zoneinfo = _zoneinfo_module()
    if name is None or name == "UTC" or _zoneinfo is None:
        return _dt.timezone.utc
    try:
        return _zoneinfo.ZoneInfo(name)
    except Exception:
        return _dt.timezone.utc


def _database_available() -> bool:
    _zoneinfo = _zoneinfo_module()
    try:
        _zoneinfo.ZoneInfo("Etc/UTC")  # type: ignore[union-attr]
    except Exception:
        return False
    return True

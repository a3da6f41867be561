"""A run's id (runs/ids.py) has the shape `uuid.uuid4().hex` gave it before: ids already
stored, the web page and Dagster's tools expect a version-4 UUID in 32 hex digits."""

from __future__ import annotations

import uuid

from workspace_manager.runs.ids import new_run_id


def test_a_run_id_is_a_random_version_4_uuid_in_hex() -> None:
    ids = [new_run_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for run_id in ids:
        parsed = uuid.UUID(hex=run_id)
        assert parsed.hex == run_id  # 32 lowercase hex digits, no dashes
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # every other bit varies: none is stuck at 0 or 1 over 2,000 ids
    fixed = {6 * 8 + i for i in range(4)} | {8 * 8 + i for i in range(2)}  # version, variant
    seen_one = seen_zero = 0
    for run_id in ids:
        value = int(run_id, 16)
        seen_one |= value
        seen_zero |= ~value
    for bit in range(128):
        if (127 - bit) in fixed:
            continue
        assert (seen_one >> bit) & 1 and (seen_zero >> bit) & 1, bit

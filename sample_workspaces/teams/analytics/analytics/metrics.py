"""Pure helpers the jobs use; kept apart so they can be unit-tested without wsm."""

from __future__ import annotations

from typing import Dict, Iterable


def daily_totals(amounts: Iterable[float]) -> Dict[str, float]:
    values = list(amounts)
    total = round(sum(values), 2)
    return {
        "count": len(values),
        "total": total,
        "mean": round(total / len(values), 2) if values else 0.0,
    }

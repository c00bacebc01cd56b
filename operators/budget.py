"""What a fitted strategy reports about its budget: the shortfall, and the facts of a one-copy strategy."""

from __future__ import annotations


def shortfall(budget: float | None, expected: float) -> float:
    """How much of the budget the fitted strategy cannot fill; 0 within rounding (1e-9 of the budget)."""
    if budget is None:
        return 0.0
    short = budget - expected
    return short if short > 1e-9 * budget else 0.0


def without_replacement(budget: float, unit: str, pool: float) -> dict:
    """Facts of a one-copy strategy: it yields the budget, or the whole pool when that is smaller."""
    expected = min(budget, pool)
    return {"budget": budget, "unit": unit, "expected": expected, "shortfall": shortfall(budget, expected), "max_copies": 1, "pool": pool}

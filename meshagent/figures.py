"""How figures are written for people: money and counts. Imports nothing heavy, so that the CLI's
light commands can use them without the ledger's database stack."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["money", "plural"]


def money(value: Decimal | None) -> str:
    """$1,234.56; sub-cent amounts with 4 decimals ($0.0042); None is "unknown", never $0."""
    if value is None:
        return "unknown"
    sign = "-" if value < 0 else ""
    amount = abs(Decimal(value))
    if 0 < amount < Decimal("0.01"):
        return f"{sign}${amount.quantize(Decimal('0.0001'), rounding=ROUND_HALF_EVEN):,}"
    return f"{sign}${amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`1 run`, `2 runs`, `1,204 model calls`: a count with its noun agreeing."""
    return f"{count:,} {singular if count == 1 else many or singular + 's'}"

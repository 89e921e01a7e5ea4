"""Column types that keep money exact and times in UTC on both SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["ExactDecimal", "UTCDateTime", "canonical_decimal", "utc"]


def utc(moment: datetime) -> datetime:
    """The same instant as an aware UTC datetime; naive values are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def canonical_decimal(value: Decimal | float | int | str, scale: int) -> Decimal:
    """`value` rounded half-even to `scale` decimals, the precision the ledger stores."""
    if isinstance(value, float):
        value = str(value)  # 0.1 means 0.1, not its binary approximation
    return Decimal(value).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_EVEN)


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal with a fixed scale, never a float.

    PostgreSQL stores NUMERIC(precision, scale). SQLite has no exact decimal type (its NUMERIC
    affinity turns decimals into floats), so there the value is an integer count of
    10**-scale units: sums stay exact in SQL, and reads give `Decimal` back.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, scale: int, precision: int = 28) -> None:
        super().__init__()
        self.scale = scale
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(self.precision, self.scale, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = canonical_decimal(value, self.scale)
        if dialect.name == "sqlite":
            return int(exact.scaleb(self.scale))
        return exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale)
        return canonical_decimal(value, self.scale)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp written and read as aware UTC (SQLite keeps it naive, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        moment = utc(value)
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)

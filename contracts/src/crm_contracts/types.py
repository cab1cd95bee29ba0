"""Field types shared by the event payloads: money, currency, identifiers."""

from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

MONEY_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?$"
"""A non-negative decimal string: up to 12 integer digits and 4 decimals ("129.90")."""


def _money_from_string(value: Any) -> Any:
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise ValueError('money must be a decimal string such as "129.90", not a JSON number')
    import re

    if not re.fullmatch(MONEY_PATTERN, value):
        raise ValueError(
            "money must be a non-negative decimal string with at most 12 integer digits "
            'and 4 decimals, such as "129.90"'
        )
    return Decimal(value)


def _non_negative(value: Decimal) -> Decimal:
    if value < 0 or not value.is_finite():
        raise ValueError("money must be a finite amount >= 0")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money_from_string),
    AfterValidator(_non_negative),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always"),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["129.90"]}),
]
"""Money as a decimal string in JSON and a `Decimal` in Python; never a float."""

Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Z]{3}$", "examples": ["CNY"]}),
]
"""An ISO 4217 alphabetic currency code."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
"""An identifier from a source system: 1-128 characters, no white space."""

ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=10_000)]

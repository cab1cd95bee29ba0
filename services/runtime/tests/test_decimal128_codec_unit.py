"""The runtime's Decimal128 conversions store and read money exactly as bson does: the same 16
bytes for every Decimal, and the same digits and exponent back (`12.30` stays `12.30`, not `12.3`),
so a record saved through them is byte for byte what `Decimal128(value)` made."""

import random
from decimal import Decimal

import pytest
from bson.decimal128 import Decimal128

from crm_runtime.mongo import from_decimal128, to_decimal128

EDGES = [
    "0", "-0", "0.00", "-0.00", "1.0", "1.00", "12.30", "-12.34", "100", "0.000001",
    "-0.0000001", "1E+5", "1E-6176", "0E-6176", "1E+6111", "1E+6112", "9" * 34, "-" + "9" * 34,
    "123456789012345678901234567890123.4", "12345678901234567890123456789012345", "NaN",
    "-NaN", "Infinity", "-Infinity",
]  # fmt: skip


def samples() -> list[Decimal]:
    rng = random.Random(16)
    values = [Decimal(text) for text in EDGES]
    for _ in range(3000):
        sign = rng.choice(["", "-"])
        coefficient = rng.randrange(10 ** rng.randrange(1, 36))
        values.append(Decimal(f"{sign}{coefficient}E{rng.randrange(-6176, 6112)}"))
        values.append(Decimal(f"{sign}{coefficient}E{rng.randrange(-40, 3)}"))
        values.append(Decimal(rng.randrange(-(10**9), 10**9)) / 100)
    return values


@pytest.mark.parametrize("chunk", range(4))
def test_money_is_stored_in_the_bits_bson_gives_it(chunk: int) -> None:
    for value in samples()[chunk::4]:
        try:
            expected = Decimal128(value)
        except (ValueError, ArithmeticError) as error:
            with pytest.raises(type(error)):
                to_decimal128(value)
            continue
        assert to_decimal128(value).bid == expected.bid, value


@pytest.mark.parametrize("chunk", range(4))
def test_money_reads_back_with_its_digits_and_exponent(chunk: int) -> None:
    for value in samples()[chunk::4]:
        try:
            stored = Decimal128(value)
        except (ValueError, ArithmeticError):
            continue
        expected = stored.to_decimal()
        read = from_decimal128(stored)
        if expected.is_nan():
            assert read.is_nan()
            assert read.is_signed() == expected.is_signed()
            continue
        assert read.as_tuple() == expected.as_tuple(), value


def test_a_number_stored_before_decimal128_reads_as_a_decimal() -> None:
    assert from_decimal128("12.30").as_tuple() == Decimal("12.30").as_tuple()
    assert from_decimal128(7) == Decimal(7)

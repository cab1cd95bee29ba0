"""The bounds every rules dataclass checks: worded as pydantic's, so a rule refused from the
environment reads like any other setting."""

from decimal import Decimal

import pytest

from crm_runtime.bounds import within

pytestmark = pytest.mark.unit


def test_values_within_every_bound_pass() -> None:
    within("orders_kept", 20_000, ge=1, le=20_000)
    within("multiplier", Decimal("0.5"), gt=0, lt=1)


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0, {"ge": 1}, "x must be greater than or equal to 1"),
        (0, {"gt": 0}, "x must be greater than 0"),
        (20_001, {"le": 20_000}, "x must be less than or equal to 20000"),
        (Decimal(1), {"lt": 1}, "x must be less than 1"),
    ],
)
def test_a_value_out_of_a_bound_is_refused_naming_it(
    value: Decimal | float, bounds: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        within("x", value, **bounds)

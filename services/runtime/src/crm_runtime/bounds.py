"""Bounds on a rule's value, checked by the domain's rules dataclasses in `__post_init__`.

Pure Python (with `calendar`, a runtime module a service's domain may import): the message is
worded as pydantic's, so a rule refused from the environment reads the same as any other setting.
"""

import operator
from collections.abc import Callable
from decimal import Decimal

Number = Decimal | float

_BOUNDS: dict[str, tuple[str, Callable[[Number, Number], bool]]] = {
    "ge": ("greater than or equal to", operator.ge),
    "gt": ("greater than", operator.gt),
    "le": ("less than or equal to", operator.le),
    "lt": ("less than", operator.lt),
}


def within(name: str, value: Number, **bounds: Number) -> None:
    """Raise a ValueError ("orders_kept must be less than or equal to 20000") when `value` is out
    of any of `ge`, `gt`, `le`, `lt`."""
    for kind, limit in bounds.items():
        words, holds = _BOUNDS[kind]
        if not holds(value, limit):
            raise ValueError(f"{name} must be {words} {limit}")

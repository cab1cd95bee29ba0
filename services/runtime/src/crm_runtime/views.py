"""An HTTP answer made from a domain record: each field of the response model read from the
record's attribute of the same name (a field or a property), as pydantic's `from_attributes` does,
except the fields whose value the route computes, which are given explicitly."""

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def view(model: type[M], source: object, **computed: Any) -> M:
    """`model` validated from `source`'s attributes, `computed` taking precedence. The JSON
    follows the model's field order, as when the model is built field by field."""
    unknown = set(computed) - set(model.model_fields)
    if unknown:
        raise TypeError(f"not fields of {model.__name__}: {sorted(unknown)}")
    values = {
        name: computed[name] if name in computed else getattr(source, name)
        for name in model.model_fields
    }
    return model.model_validate(values)

"""A dataclass as a MongoDB document and back, field by field, where the stored shape is the
dataclass's own: its fields by name, in their order, the record's id stored as `_id`.

What is stored otherwise (sealed text, Decimal128, a date as text) is passed explicitly, as
`overrides`, both ways. A key missing from an older document takes the field's default; a field
without a default must then be passed, or the read fails with `KeyError`, as `doc["name"]` would.
"""

import dataclasses
from typing import Any, TypeVar

from crm_runtime.mongo import Document

T = TypeVar("T")


def fields_of(record: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name, in their order; the values as they are (no copy,
    unlike `dataclasses.asdict`)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def dataclass_document(
    record: Any, id_field: str, *, id_key: str = "_id", **overrides: Any
) -> Document:
    """`{id_key: record.<id_field>, **fields}`: the id first, then every other field in order,
    `overrides` replacing a field's value in place. `id_field` may be a property; when it is a
    field it is stored once, as `id_key`."""
    fields = fields_of(record)
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"not fields of {type(record).__name__}: {sorted(unknown)}")
    document: Document = {id_key: getattr(record, id_field)}
    for name, value in fields.items():
        if name != id_field:
            document[name] = overrides.get(name, value)
    return document


def dataclass_from(
    cls: type[T], doc: Document, id_field: str | None, *, id_key: str = "_id", **overrides: Any
) -> T:
    """An instance of the dataclass `cls`: `id_field` from `doc[id_key]` (when it is a field;
    None: a record without id, as a sub-document),
    each other field from `overrides`, else from `doc`, else its default (`KeyError` if it has
    none). Keys of `doc` that are not fields are left out."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise TypeError(f"not fields of {cls.__name__}: {sorted(unknown)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif f.name == id_field:
            values[f.name] = doc[id_key]
        elif f.name in doc:
            values[f.name] = doc[f.name]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f.name)
    return cls(**values)

"""JSON Schema per event type, written to `contracts/schemas/` and snapshot-tested.

Regenerate after a model change with `make schemas` (`python -m crm_contracts.schemas <dir>`).
"""

import json
import sys
from pathlib import Path
from typing import Any

from crm_contracts.envelope import CloudEvent
from crm_contracts.registry import EVENT_MODELS, event_topic


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of the whole CloudEvent for that event type."""
    documents: dict[str, dict[str, Any]] = {}
    for event_type, model in sorted(EVENT_MODELS.items()):
        schema = CloudEvent[model].model_json_schema(mode="validation")  # type: ignore[valid-type]
        schema["$id"] = f"urn:crm:schema:{event_topic(event_type)}:{event_type}"
        schema["title"] = event_type
        documents[f"{event_topic(event_type)}/{event_type}.json"] = schema
    return documents


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write(directory: Path) -> list[Path]:
    written = []
    for name, schema in schema_documents().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[2] / "schemas"
    for path in write(target):
        print(path)

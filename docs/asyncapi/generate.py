"""Write each service's AsyncAPI document to `docs/asyncapi/<service>.yaml`.

    .venv/bin/python docs/asyncapi/generate.py            # all five
    .venv/bin/python docs/asyncapi/generate.py --check    # exit 1 if a file is out of date
    .venv/bin/python docs/asyncapi/generate.py --out DIR archive

Each document is what the service serves on `/asyncapi.json` (`crm_runtime.asyncapi`), built from
the service's own `build_app` with default settings: building connects to nothing. The shell's
`CRM_*`, `KAFKA_*` and `MONGODB_*` variables are ignored, so the files do not depend on it.
"""

import argparse
import asyncio
import base64
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from crm_contracts.topics import SERVICES
from crm_runtime.asyncapi import ServiceDocument

HERE = Path(__file__).resolve().parent
DUMMY_KEY = base64.b64encode(bytes(32)).decode()
"""Building an app needs a master and an index key; the document uses neither."""
SETTINGS: dict[str, object] = {
    "kafka_bootstrap_servers": "127.0.0.1:9092",
    "mongodb_url": "mongodb://127.0.0.1:27017",
    "master_keys": {"docs": DUMMY_KEY},
    "index_key": DUMMY_KEY,
}


def _builder(service: str) -> Callable[[], FastAPI]:
    if service == "archive":
        from crm_archive.app import build_app as build_archive
        from crm_archive.settings import ArchiveSettings

        return lambda: build_archive(ArchiveSettings(**SETTINGS))  # type: ignore[arg-type]
    if service == "tickets":
        from crm_tickets.app import build_app as build_tickets
        from crm_tickets.settings import TicketsSettings

        return lambda: build_tickets(TicketsSettings(**SETTINGS))  # type: ignore[arg-type]
    if service == "loyalty":
        from crm_loyalty.app import build_app as build_loyalty
        from crm_loyalty.settings import LoyaltySettings

        return lambda: build_loyalty(LoyaltySettings(**SETTINGS))  # type: ignore[arg-type]
    if service == "notify":
        from crm_notify.app import build_app as build_notify
        from crm_notify.settings import NotifySettings

        return lambda: build_notify(NotifySettings(**SETTINGS))  # type: ignore[arg-type]
    if service == "relations":
        from crm_relations.app import build_app as build_relations
        from crm_relations.settings import RelationsSettings

        return lambda: build_relations(RelationsSettings(**SETTINGS))  # type: ignore[arg-type]
    raise ValueError(f"no service {service!r}; known: {', '.join(SERVICES)}")


def render(service: str) -> str:
    """The YAML of the document `service` serves on `/asyncapi.json` (settings: `SETTINGS`,
    then this process's environment)."""
    app = _builder(service)()
    return ServiceDocument(asyncio.run(_get_json(app, "/asyncapi.json"))).to_yaml()


async def _get_json(app: FastAPI, path: str) -> dict[str, Any]:
    """GET without the app's lifespan: the runtime (broker, database) is never started."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
        response = await client.get(path)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("services", nargs="*", metavar="service", help=", ".join(SERVICES))
    parser.add_argument("--out", type=Path, default=HERE, help="the directory to write to")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    for name in [n for n in os.environ if n.startswith(("CRM_", "KAFKA_", "MONGODB_"))]:
        del os.environ[name]  # the documents describe the defaults, not this shell
    stale = []
    for service in args.services or SERVICES:
        if service not in SERVICES:
            parser.error(f"no service {service!r}; known: {', '.join(SERVICES)}")
        path = args.out / f"{service}.yaml"
        text = render(service)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.write_text(text, encoding="utf-8")
        print(path)
    for path in stale:
        print(f"{path} is out of date: run docs/asyncapi/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

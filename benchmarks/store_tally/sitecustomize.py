"""What a process asks of the store: a PyMongo command listener, on when `CRM_STORE_TALLY` names
a directory (`benchmarks/store_share.py` puts this folder first on `PYTHONPATH`).

Per (command, collection): commands, documents sent (inserted, update and delete statements;
for a find by `_id $in`, the keys it asks for),
documents changed (the replies' `n`/`nModified`), documents returned (finds, getMores), and the
BSON bytes of the documents and statements sent and of the documents returned.
Appends the running totals as one JSON line per second to `<dir>/<pid>.jsonl`, with the
process's command line, so a phase is the difference of two lines.
"""

import json
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any

_DIR = os.environ.get("CRM_STORE_TALLY", "")


def _collection(name: str, command: Any) -> str:
    if name == "getMore":
        return str(command.get("collection", "?"))
    value = command.get(name)
    return value if isinstance(value, str) else "-"


if _DIR:
    import bson
    from pymongo import monitoring

    _lock = threading.Lock()
    _totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    """'command collection' -> [commands, sent, changed, returned, bytes sent, bytes returned]"""
    _pending: dict[int, str] = {}

    class _Tally(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            name = event.command_name
            command = event.command
            key = f"{name} {_collection(name, command)}"
            sent = size = 0
            for field in ("documents", "updates", "deletes"):
                if field in command:
                    sent = len(command[field])
                    size = sum(len(bson.encode(item)) for item in command[field])
            if name == "find":  # the keys a find by `_id` asks for
                wanted = (command.get("filter") or {}).get("_id")
                if isinstance(wanted, dict) and isinstance(wanted.get("$in"), list):
                    sent = len(wanted["$in"])
            with _lock:
                row = _totals[key]
                row[0] += 1
                row[1] += sent
                row[4] += size
                _pending[event.request_id] = key

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            reply = event.reply
            changed = int(reply.get("nModified", reply.get("n", 0)) or 0)
            if "upserted" in reply:
                changed += len(reply["upserted"])
            cursor = reply.get("cursor") or {}
            batch = cursor.get("firstBatch", cursor.get("nextBatch", [])) or []
            returned = len(batch)
            size = sum(len(bson.encode(doc)) for doc in batch)
            with _lock:
                key = _pending.pop(event.request_id, None)
                if key is not None:
                    _totals[key][2] += changed
                    _totals[key][3] += returned
                    _totals[key][5] += size

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            with _lock:
                key = _pending.pop(event.request_id, None)
                if key is not None:
                    _totals[f"FAILED {key}"][0] += 1

    monitoring.register(_Tally())
    os.makedirs(_DIR, exist_ok=True)
    _path = os.path.join(_DIR, f"{os.getpid()}.jsonl")

    def _writer() -> None:
        while True:
            time.sleep(1.0)
            _argv = " ".join(sys.argv)
            with _lock:
                snapshot = {k: list(v) for k, v in _totals.items()}
            with open(_path, "a") as out:
                out.write(json.dumps({"t": time.time(), "argv": _argv, "totals": snapshot}) + "\n")

    threading.Thread(target=_writer, name="store-tally", daemon=True).start()

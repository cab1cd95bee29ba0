"""Structured JSON logs that never carry phone numbers, emails or names.

Code logs identifiers (event ids, customer ids, offsets), never payloads. As a second line of
defence the formatter masks anything that looks like an email address or a phone number.

Whatever a producer or a person sent may end up in a log line or an error text (an unknown event
type of 1 MB, say), so every text is clipped before any pattern runs, and the patterns are linear:
each bounded repetition is tried from a position at most a fixed number of characters ahead.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
PHONE = re.compile(r"(?<![\w-])\+?\d[\d ()-]{6,18}\d(?![\w-])")
TEXT_MAX = 2000
"""Characters of one logged text (a message, a field) kept; the rest is cut before redaction."""
EXCEPTION_MAX = 16_000
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def clip(text: str, limit: int = TEXT_MAX) -> str:
    """`text` cut to `limit` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text) - limit} more characters]"


def redact(text: str, limit: int = TEXT_MAX) -> str:
    """Clip, then mask emails and phone-like digit runs (linear in the clipped length)."""
    return PHONE.sub("[phone]", EMAIL.sub("[email]", clip(text, limit)))


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info), EXCEPTION_MAX)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "pymongo", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

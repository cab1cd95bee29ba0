"""`serve(settings, build_app)`: how every service's `python -m crm_<service>` runs — JSON logs
set up first, then the app under uvicorn on the settings' host and port, on uvloop's event loop
(its transports and timers are C: a busy service spends 2-5% less CPU; docs/performance.md,
"The collector and the event loop"), no access log (the routes and
the audit say what matters), a bounded graceful shutdown."""

from collections.abc import Callable
from typing import Protocol, TypeVar

import uvicorn
from fastapi import FastAPI

from crm_runtime.logs import configure_logging


class Served(Protocol):
    @property
    def service(self) -> str: ...

    @property
    def log_level(self) -> str: ...

    @property
    def http_host(self) -> str: ...

    @property
    def http_port(self) -> int: ...


S = TypeVar("S", bound=Served)


def serve(settings: S, build_app: Callable[[S], FastAPI], *, shutdown_s: int = 20) -> None:
    configure_logging(settings.service, settings.log_level)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=shutdown_s,
    )

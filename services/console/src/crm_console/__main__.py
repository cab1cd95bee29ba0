"""`python -m crm_console` (or `crm-console`): run the console."""

import logging

import uvicorn

from crm_console.app import build_app
from crm_console.settings import ConsoleSettings
from crm_runtime.logs import configure_logging


def main() -> None:
    settings = ConsoleSettings()
    configure_logging(settings.service, settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry queries: names, phones
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

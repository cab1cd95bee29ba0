"""`python -m crm_tickets` (or `crm-tickets`): run the service."""

import uvicorn

from crm_runtime.logs import configure_logging
from crm_tickets.app import build_app
from crm_tickets.settings import TicketsSettings


def main() -> None:
    settings = TicketsSettings()
    configure_logging(settings.service, settings.log_level)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()

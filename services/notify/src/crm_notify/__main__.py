"""`python -m crm_notify` (or `crm-notify`): run the service."""

import uvicorn

from crm_notify.app import build_app
from crm_notify.settings import NotifySettings
from crm_runtime.logs import configure_logging


def main() -> None:
    settings = NotifySettings()
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

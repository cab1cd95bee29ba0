"""`python -m crm_console` (or `crm-console`): run the console."""

import logging

from crm_console.app import build_app
from crm_console.settings import ConsoleSettings
from crm_runtime.serve import serve


def main() -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its lines carry queries: names, phones
    serve(ConsoleSettings(), build_app, shutdown_s=10)


if __name__ == "__main__":
    main()

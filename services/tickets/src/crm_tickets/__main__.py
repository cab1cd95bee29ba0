"""`python -m crm_tickets` (or `crm-tickets`): run the service."""

from crm_runtime.serve import serve
from crm_tickets.app import build_app
from crm_tickets.settings import TicketsSettings


def main() -> None:
    serve(TicketsSettings(), build_app)


if __name__ == "__main__":
    main()

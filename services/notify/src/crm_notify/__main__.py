"""`python -m crm_notify` (or `crm-notify`): run the service."""

from crm_notify.app import build_app
from crm_notify.settings import NotifySettings
from crm_runtime.serve import serve


def main() -> None:
    serve(NotifySettings(), build_app)


if __name__ == "__main__":
    main()

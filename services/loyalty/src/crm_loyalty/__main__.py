"""`python -m crm_loyalty` (or `crm-loyalty`): run the service."""

from crm_loyalty.app import build_app
from crm_loyalty.settings import LoyaltySettings
from crm_runtime.serve import serve


def main() -> None:
    serve(LoyaltySettings(), build_app)


if __name__ == "__main__":
    main()

"""`python -m crm_relations` (or `crm-relations`): run the service."""

from crm_relations.app import build_app
from crm_relations.settings import RelationsSettings
from crm_runtime.serve import serve


def main() -> None:
    serve(RelationsSettings(), build_app)


if __name__ == "__main__":
    main()

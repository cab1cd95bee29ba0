"""`python -m crm_archive` (or `crm-archive`): run the service."""

from crm_archive.app import build_app
from crm_archive.settings import ArchiveSettings
from crm_runtime.serve import serve


def main() -> None:
    serve(ArchiveSettings(), build_app)


if __name__ == "__main__":
    main()

"""The one exception a command raises for a user-facing failure, and the exit codes."""

from crm_contracts.topics import SERVICES

EXIT_INVALID = 1
"""Some input was invalid or some event could not be sent (the rest was done)."""
EXIT_USAGE = 2
"""A user mistake: a missing file, an unknown service, an unsupported operation."""
EXIT_BROKER = 3
"""Kafka could not be reached or refused the operation."""
EXIT_SERVICE = 4
"""A service's HTTP API could not be reached, refused the token, or failed."""


class CliError(Exception):
    """Printed as one line (`error: ...`) on stderr; the command exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def check_service(service: str) -> str:
    """`service` when the suite has it; else a usage error naming the ones it has."""
    if service not in SERVICES:
        raise CliError(f"unknown service {service!r} (one of: {', '.join(SERVICES)})")
    return service

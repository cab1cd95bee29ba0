"""A Compose implementation that can validate `deploy/compose.yaml` (no Docker engine needed).

The Compose plugin (`docker compose`) when the machine has it, else Debian's `docker-compose`
(installed on first use; CI runs as root).
"""

import shutil
import subprocess

from tooling import debian_binary


def compose_command() -> list[str]:
    """The argv prefix of a working Compose: `docker compose` or `docker-compose`."""
    docker = shutil.which("docker")
    if docker is not None:
        done = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=60, check=False
        )
        if done.returncode == 0:
            return [docker, "compose"]
    return [str(debian_binary("docker-compose", "docker-compose"))]

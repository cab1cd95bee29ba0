"""Tools the deployment and operations tests need, installed on first use (nothing by hand).

Each tool has a module here with one function that returns the path of a working binary,
installing it into `.cache/tools/` (or from Debian's packages) when it is missing. A failed
install fails the test that needed it, with the command's output: nothing is skipped.
"""

import subprocess
from pathlib import Path

from stackutil import local_stack

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".cache" / "tools"
PORTS: dict[str, int] = dict(local_stack.SERVICES)
"""Each service's HTTP port (the local stack's, the services' defaults)."""


def run(command: list[str], *, cwd: Path | None = None, timeout: float = 900) -> str:
    """Run an install step; raise with its output if it fails."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return done.stdout


def debian_binary(binary: str, package: str) -> Path:
    """`binary` from the PATH, else `apt-get install package` (CI runs as root): the local
    stack's installer, which raises with apt's output when it fails."""
    return Path(local_stack.debian_binary(binary, package))

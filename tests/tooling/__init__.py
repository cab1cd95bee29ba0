"""Tools the deployment and operations tests need, installed on first use (nothing by hand).

Each tool has a module here with one function that returns the path of a working binary,
installing it into `.cache/tools/` (or from Debian's packages) when it is missing. A failed
install fails the test that needed it, with the command's output: nothing is skipped.
"""

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".cache" / "tools"


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
    """`binary` from the PATH, else `apt-get install package` (CI runs as root)."""
    found = shutil.which(binary)
    if found:
        return Path(found)
    try:
        run(["apt-get", "install", "-y", "-q", package])
    except RuntimeError:
        run(["apt-get", "update", "-q"])
        run(["apt-get", "install", "-y", "-q", package])
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but {binary} is not on the PATH")
    return Path(found)

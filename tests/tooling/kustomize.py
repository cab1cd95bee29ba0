"""kustomize, built from the Go module proxy into `.cache/tools/bin` on first use.

`kubectl kustomize` renders with this same library; kubectl is not on every machine of this kind,
kustomize (one static binary, `go install`) can always be had.
"""

import shutil
import subprocess
from pathlib import Path

from tooling import TOOLS, run

KUSTOMIZE_VERSION = "v5.7.1"
"""Served by the Go module proxy and built by the machine's Go (1.26) without a newer toolchain."""


def _version(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def kustomize() -> Path:
    """The path of kustomize `KUSTOMIZE_VERSION`, installing it with `go install` if missing."""
    binary = TOOLS / "bin" / "kustomize"
    if binary.exists() and _version(binary) == KUSTOMIZE_VERSION:
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("kustomize is installed with `go install`: put go (1.22+) on the PATH")
    binary.parent.mkdir(parents=True, exist_ok=True)
    run(
        [
            "env",
            f"GOBIN={binary.parent}",
            go,
            "install",
            f"sigs.k8s.io/kustomize/kustomize/v5@{KUSTOMIZE_VERSION}",
        ],
        cwd=binary.parent,
    )
    found = _version(binary)
    if found != KUSTOMIZE_VERSION:
        raise RuntimeError(f"go install made {binary}, which says {found!r}")
    return binary

"""Prometheus and promtool from Debian's `prometheus` package (one package ships both).

Installing the package does not start anything our tests rely on: in a container `policy-rc.d`
keeps its service down, and where the package's service does start (a systemd host, on :9090)
our tests never talk to it: they run `prometheus` themselves on a free port with their own
configuration and storage.
"""

from pathlib import Path

from tooling import debian_binary

PACKAGE = "prometheus"


def promtool() -> Path:
    """`promtool` (check config/rules/metrics, test rules), installed on first use."""
    return debian_binary("promtool", PACKAGE)


def prometheus() -> Path:
    """The `prometheus` server binary, installed on first use."""
    return debian_binary("prometheus", PACKAGE)

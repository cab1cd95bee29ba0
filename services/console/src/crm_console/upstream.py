"""Calls to the services' HTTP APIs with the signed-in person's own token.

A call never raises for what a service answers or for a service that is down: it returns an
`Answer` or a `Failure`, and the page shows the failure in the part the call feeds while the rest
of the page renders. A failure is `unavailable` (no connection, a timeout, a 5xx) or a refusal
(4xx) with the service's message and, for a 422, the fields it named.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Answer:
    service: str
    status: int
    data: Any
    etag: str | None = None
    """The record's version, when the service versions it (`ETag`): sent back as `If-Match`."""


@dataclass(frozen=True)
class Failure:
    service: str
    status: int | None
    """None: no answer (refused, reset, timed out)."""
    message: str = ""
    problems: list[str] = field(default_factory=list)
    """For a 422: where the service found a problem (`body.summary`)."""

    @property
    def unavailable(self) -> bool:
        return self.status is None or self.status >= 500


Result = Answer | Failure


class UpstreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "crm_console_upstream_calls",
            "Calls to the services, by service and outcome (ok, refused, unavailable).",
            ["service", "outcome"],
            registry=registry,
        )
        self.seconds = Histogram(
            "crm_console_upstream_seconds",
            "Time of one call to a service.",
            ["service"],
            registry=registry,
        )


def _clean(params: Params | None) -> list[tuple[str, Any]]:
    """Query parameters without the empty ones (a blank form field means "not set")."""
    if params is None:
        return []
    pairs = params.items() if isinstance(params, Mapping) else params
    return [(k, v) for k, v in pairs if v is not None and v != ""]


class Services:
    def __init__(
        self,
        urls: Mapping[str, str],
        timeout_s: float,
        metrics: UpstreamMetrics,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.metrics = metrics
        self.client = httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str,
        *,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Result:
        url = self.urls[service] + path
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        try:
            with self.metrics.seconds.labels(service).time():
                response = await self.client.request(
                    method, url, params=_clean(params), json=json, headers=sent
                )
        except httpx.HTTPError as exc:  # refused, reset, timed out, a broken answer
            log.warning(
                "service unreachable", extra={"service": service, "error": type(exc).__name__}
            )
            self.metrics.calls.labels(service, "unavailable").inc()
            return Failure(service, None, type(exc).__name__)
        if response.status_code < 400:
            self.metrics.calls.labels(service, "ok").inc()
            etag = response.headers.get("etag")
            return Answer(service, response.status_code, _json(response), etag)
        outcome = "unavailable" if response.status_code >= 500 else "refused"
        self.metrics.calls.labels(service, outcome).inc()
        body = _json(response)
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        problems = (
            [str(p.get("where", "")) for p in body.get("problems", []) if isinstance(p, dict)]
            if isinstance(body, dict)
            else []
        )
        return Failure(service, response.status_code, message, problems)

    async def get(
        self, service: str, path: str, token: str, params: Params | None = None
    ) -> Result:
        return await self.call(service, "GET", path, token, params=params)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None

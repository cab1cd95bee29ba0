"""`crm topics`: the registry's topics beside what the broker has; create the missing ones.

Creation is the runtime's (`crm_runtime.topics`, as the local stack's): the registry's partitions
and `retention.ms`, and the registry's retention set again on topics that differ.
"""

from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from crm_cli.connection import admin_client
from crm_contracts.topics import ALL_TOPICS, DAY_MS, Topic
from crm_runtime.topics import create_topics, set_retention


@dataclass(frozen=True)
class TopicState:
    declared: Topic
    partitions: int | None = None
    """On the broker; None when the topic is missing."""
    retention_ms: int | None = None
    created: bool = False
    retention_fixed: bool = False

    @property
    def missing(self) -> bool:
        return self.partitions is None

    @property
    def problems(self) -> list[str]:
        if self.missing:
            return ["missing"]
        found: list[str] = []
        if self.partitions != self.declared.partitions:
            found.append(f"partitions {self.partitions} != {self.declared.partitions}")
        if self.retention_ms != self.declared.retention_ms and not self.retention_fixed:
            found.append("retention differs")
        return found


async def inspect(admin: AIOKafkaAdminClient) -> list[TopicState]:
    existing = set(await admin.list_topics())
    present = [t for t in ALL_TOPICS if t.name in existing]
    partitions: dict[str, int] = {}
    if present:
        for described in await admin.describe_topics([t.name for t in present]):
            if described["error_code"] == 0:
                partitions[described["topic"]] = len(described["partitions"])
    retention = await _retentions(admin, [t.name for t in present])
    return [
        TopicState(t, partitions.get(t.name), retention.get(t.name))
        if t.name in partitions
        else TopicState(t)
        for t in ALL_TOPICS
    ]


async def _retentions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, {"retention.ms": None}) for n in names]
    found: dict[str, int] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] == "retention.ms" and entry["config_value"] is not None:
                    found[resource["resource_name"]] = int(entry["config_value"])
    return found


async def check_topics(
    options: dict[str, Any], *, create: bool = False, replication_factor: int = 1
) -> list[TopicState]:
    """The state of every registry topic; with `create`, missing ones are created first and
    existing ones whose retention differs get the registry's."""
    async with admin_client(options) as admin:
        states = await inspect(admin)
        if not create:
            return states
        missing = [s.declared for s in states if s.missing]
        await create_topics(admin, missing, replication_factor=replication_factor)
        stale = [
            s.declared
            for s in states
            if not s.missing and s.retention_ms != s.declared.retention_ms
        ]
        await set_retention(admin, stale)
        after = {s.declared.name: s for s in await inspect(admin)}
        created = {t.name for t in missing}
        fixed = {t.name for t in stale}
        return [
            TopicState(
                s.declared,
                s.partitions,
                s.retention_ms,
                created=s.declared.name in created,
                retention_fixed=s.declared.name in fixed,
            )
            for s in after.values()
        ]


def retention_text(ms: int | None) -> str:
    """`forever`, `30d`, `14d`, `36h`, `1500ms`; `-` when unknown."""
    if ms is None:
        return "-"
    if ms < 0:
        return "forever"
    if ms % DAY_MS == 0:
        return f"{ms // DAY_MS}d"
    if ms % 3_600_000 == 0:
        return f"{ms // 3_600_000}h"
    return f"{ms}ms"


def table_rows(states: list[TopicState]) -> list[tuple[str, str, str, str]]:
    """(topic, declared, on the broker, status) for each topic."""
    rows = []
    for s in states:
        declared = f"{s.declared.partitions} × {retention_text(s.declared.retention_ms)}"
        broker = "-" if s.missing else f"{s.partitions} × {retention_text(s.retention_ms)}"
        if s.created:
            status = "created"
        elif s.problems:
            status = "MISSING" if s.missing else "; ".join(s.problems)
        else:
            status = "retention set" if s.retention_fixed else "ok"
        rows.append((s.declared.name, declared, broker, status))
    return rows

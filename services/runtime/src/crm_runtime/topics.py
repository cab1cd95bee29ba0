"""Topics as the contracts' registry declares them, made on a broker (the local stack, `crm
topics --create`): the registry's partitions and `retention.ms`."""

from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from crm_contracts.topics import Topic


async def create_topics(
    admin: AIOKafkaAdminClient, topics: Sequence[Topic], *, replication_factor: int = 1
) -> None:
    """Create `topics` with their declared partitions and retention."""
    if topics:
        await admin.create_topics(
            [
                NewTopic(
                    t.name,
                    num_partitions=t.partitions,
                    replication_factor=replication_factor,
                    topic_configs={"retention.ms": str(t.retention_ms)},
                )
                for t in topics
            ]
        )


async def set_retention(admin: AIOKafkaAdminClient, topics: Sequence[Topic]) -> None:
    """Set the declared `retention.ms` on existing `topics`."""
    if topics:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, t.name, {"retention.ms": str(t.retention_ms)}
                )
                for t in topics
            ]
        )

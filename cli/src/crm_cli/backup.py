"""`crm backup` and `crm restore`: consistent snapshots that honour erasure (ADR 0013).

A **data backup** (`DIR/<id>/`) holds, per service, every collection of its database except the
data keys (`data_keys`) and the runtime's leases (`locks`), as concatenated BSON documents, read
inside one snapshot transaction, with the consumer group's committed offsets read just before.
A **key backup** (`KEYS/<id>/`) holds the `data_keys` collections, taken after the data snapshot,
and lives elsewhere with a short retention: once the key backups older than an erasure are
pruned, no file anywhere opens the erased person's data in an old data backup.

A restore verifies every checksum, loads the data and the newest key backup not older than it,
destroys the keys of every customer whose erasure was requested or confirmed since the snapshot,
and sets each consumer group back to the snapshot's offsets: the services re-consume what came
after (their inbox, restored with the data, absorbs what the snapshot already holds).
"""

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import bson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pydantic import ValidationError
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern

from crm_cli.connection import admin_client, consumer_client, partitions_of, retry_coordinator
from crm_cli.errors import EXIT_INVALID, EXIT_USAGE, CliError, check_service
from crm_contracts.members import v1 as members_v1
from crm_contracts.privacy import v1 as privacy_v1
from crm_contracts.topics import MEMBERS, PRIVACY, SERVICES, consumed_by
from crm_runtime.settings import ServiceSettings

FORMAT = 1
MANIFEST = "manifest.json"
KEYS_COLLECTION = "data_keys"
NOT_BACKED_UP = (KEYS_COLLECTION, "locks")
"""`data_keys` goes to the key backup; `locks` are leases of processes that will not come back."""
BATCH = 1000
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True)
ID_FORMAT = "%Y%m%dT%H%M%S%fZ"

Offsets = dict[str, dict[str, int]]
"""topic -> partition (as a string, JSON's keys) -> offset."""


class Progress(Protocol):
    """Where long steps report: `task(description, total)` returns `advance(count)`."""

    def task(self, description: str, total: int | None) -> Callable[[int], None]: ...


class NoProgress:
    def task(self, description: str, total: int | None) -> Callable[[int], None]:
        return lambda count: None


# -- what to back up -------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A service's database and consumer group, named as the service names them."""

    service: str
    database: str
    group: str


def targets(selection: str, environ: Mapping[str, str] = os.environ) -> list[Target]:
    """`all` or one service; the database and group from `CRM_<SERVICE>_DATABASE` /
    `CRM_<SERVICE>_CONSUMER_GROUP` (the services' own settings), else their defaults."""
    services = list(SERVICES) if selection == "all" else [check_service(selection)]
    return [
        Target(
            service,
            environ.get(f"CRM_{service.upper()}_DATABASE") or f"crm_{service}",
            environ.get(f"CRM_{service.upper()}_CONSUMER_GROUP") or service,
        )
        for service in services
    ]


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` or `600s`: a retention."""
    found = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", text)
    if found is None or int(found.group(1)) == 0:
        raise CliError(f"invalid duration {text!r}: a positive number and d, h, m or s (e.g. 30d)")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}[found.group(2)]
    return timedelta(**{unit: int(found.group(1))})


def parse_time(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CliError(f"invalid time {text!r}: ISO 8601, e.g. 2026-12-03T10:00:00+08:00") from exc
    if at.tzinfo is None:
        raise CliError(f"time {text!r} has no zone (add Z or +08:00)")
    return at.astimezone(UTC)


def backup_id(at: datetime) -> str:
    return at.astimezone(UTC).strftime(ID_FORMAT)


def redact_url(url: str) -> str:
    """The store's address without credentials or options: what a manifest may say."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{hosts}"


def mongo_client(url: str) -> AsyncMongoClient[dict[str, Any]]:
    """A client with the services' TLS and credentials from the environment."""
    try:
        options = ServiceSettings(mongodb_url=url).mongodb_options()
    except ValidationError as exc:
        raise CliError(f"invalid MongoDB setting in the environment: {exc}") from exc
    return AsyncMongoClient(
        url, **options, tz_aware=True, serverSelectionTimeoutMS=5000, appname="crm-cli"
    )


# -- manifests -------------------------------------------------------------------------------
@dataclass
class FileEntry:
    file: str
    documents: int
    bytes: int
    sha256: str


@dataclass
class ServiceEntry:
    database: str
    group: str
    offsets: Offsets
    collections: dict[str, FileEntry] = field(default_factory=dict)


@dataclass
class Manifest:
    """A data backup's (`kind` "data") or a key backup's (`kind` "keys") table of contents."""

    kind: str
    id: str
    taken_at: datetime
    finished_at: datetime
    store: str
    services: dict[str, ServiceEntry]
    marks: Offsets = field(default_factory=dict)
    """Data backups: the end of `privacy.v1` when the snapshot began (erasures after it are
    re-applied by a restore)."""
    format: int = FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "kind": self.kind,
                "id": self.id,
                "taken_at": self.taken_at.isoformat(),
                "finished_at": self.finished_at.isoformat(),
                "store": self.store,
                "marks": self.marks,
                "services": {
                    name: {
                        "database": entry.database,
                        "group": entry.group,
                        "offsets": entry.offsets,
                        "collections": {
                            collection: vars(item) for collection, item in entry.collections.items()
                        },
                    }
                    for name, entry in self.services.items()
                },
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def read(cls, directory: Path) -> "Manifest":
        path = directory / MANIFEST
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != FORMAT:
                raise CliError(f"{path}: format {raw.get('format')!r}, this crm reads {FORMAT}")
            return cls(
                kind=raw["kind"],
                id=raw["id"],
                taken_at=datetime.fromisoformat(raw["taken_at"]),
                finished_at=datetime.fromisoformat(raw["finished_at"]),
                store=raw["store"],
                marks=raw.get("marks", {}),
                services={
                    name: ServiceEntry(
                        entry["database"],
                        entry["group"],
                        entry["offsets"],
                        {c: FileEntry(**item) for c, item in entry["collections"].items()},
                    )
                    for name, entry in raw["services"].items()
                },
            )
        except OSError as exc:
            raise CliError(f"no backup at {directory}: cannot read {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CliError(f"{path} is not a backup manifest: {exc}", EXIT_INVALID) from exc

    def write(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(self.to_json() + "\n")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(directory: Path, manifest: Manifest, services: Iterable[str]) -> list[str]:
    """What does not match the manifest (missing files, sizes, checksums); empty when sound."""
    problems = []
    for service in services:
        entry = manifest.services.get(service)
        if entry is None:
            problems.append(f"{service}: not in this backup")
            continue
        for item in entry.collections.values():
            path = directory / item.file
            if not path.is_file():
                problems.append(f"{item.file}: missing")
            elif path.stat().st_size != item.bytes:
                problems.append(f"{item.file}: {path.stat().st_size} bytes, expected {item.bytes}")
            elif sha256_of(path) != item.sha256:
                problems.append(f"{item.file}: checksum differs (corrupt or changed)")
    return problems


def key_backups(root: Path) -> list[tuple[Path, Manifest]]:
    """Every key backup under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [
        (path, Manifest.read(path))
        for path in sorted(root.iterdir())
        if (path / MANIFEST).is_file()
    ]
    return sorted(
        (item for item in found if item[1].kind == "keys"), key=lambda item: item[1].taken_at
    )


def choose_key_backup(
    root: Path, taken_at: datetime, services: Iterable[str]
) -> tuple[Path, Manifest] | None:
    """The newest key backup not older than the data snapshot that holds every service restored:
    it holds a key for every customer the snapshot holds sealed data of (keys are never deleted,
    only tombstoned) and a tombstone for every erasure up to its own time."""
    wanted = set(services)
    usable = [
        item
        for item in key_backups(root)
        if item[1].taken_at >= taken_at and wanted <= set(item[1].services)
    ]
    return usable[-1] if usable else None


def prune_key_backups(root: Path, retention: timedelta, now: datetime) -> list[Path]:
    """Delete the key backups older than `retention` at `now`; the deleted folders."""
    deleted = []
    for path, manifest in key_backups(root):
        if manifest.taken_at < now - retention:
            shutil.rmtree(path)
            deleted.append(path)
    return deleted


def check_apart(data_root: Path, key_root: Path) -> None:
    """The key backups may not sit inside the data backups (or the other way round)."""
    data, keys = data_root.resolve(), key_root.resolve()
    if data == keys or data in keys.parents or keys in data.parents:
        raise CliError(
            f"the key backups ({key_root}) must be kept apart from the data backups "
            f"({data_root}): another folder, ideally another store (ADR 0013)"
        )


# -- Kafka -----------------------------------------------------------------------------------
def topic_names(service: str) -> list[str]:
    return [topic.name for topic in consumed_by(service)]


async def committed_offsets(admin: AIOKafkaAdminClient, group: str, topics: list[str]) -> Offsets:
    partitions = [tp for name in topics for tp in await partitions_of(admin, name)]
    committed = await retry_coordinator(
        lambda: admin.list_consumer_group_offsets(group, partitions=partitions)
    )
    offsets: Offsets = {}
    for tp, mark in committed.items():
        if mark is not None and mark.offset >= 0:
            offsets.setdefault(tp.topic, {})[str(tp.partition)] = mark.offset
    return offsets


async def end_offsets(options: dict[str, Any], topic: str) -> dict[str, int]:
    async with admin_client(options) as admin:
        partitions = await partitions_of(admin, topic)
    async with consumer_client(options) as consumer:
        ends = await consumer.end_offsets(partitions)
    return {str(tp.partition): offset for tp, offset in ends.items()}


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many consumers are in `group` now (a running service)."""
    responses = await retry_coordinator(lambda: admin.describe_consumer_groups([group]))
    # DescribeGroups v0+: (error_code, group_id, state, protocol_type, protocol, members, ...)
    return sum(len(described[5]) for response in responses for described in response.groups)


async def erasures_since(
    options: dict[str, Any], members_from: dict[str, int], privacy_from: dict[str, int]
) -> set[str]:
    """Customers whose erasure was requested on `members.v1` or confirmed on `privacy.v1` at or
    after the given offsets (up to the end of each log now)."""
    wanted = {
        MEMBERS.name: (members_from, members_v1.CUSTOMER_ERASURE_REQUESTED),
        PRIVACY.name: (privacy_from, privacy_v1.CUSTOMER_ERASURE_COMPLETED),
    }
    customers: set[str] = set()
    async with admin_client(options) as admin:
        partitions = [tp for name in wanted for tp in await partitions_of(admin, name)]
    async with consumer_client(options) as consumer:
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        left = set()
        for tp in partitions:
            start = max(wanted[tp.topic][0].get(str(tp.partition), begin[tp]), begin[tp])
            if start < end[tp]:
                consumer.seek(tp, start)
                left.add(tp)
            else:
                consumer.pause(tp)
        while left:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset >= end[tp]:
                        continue
                    subject = _erased_subject(record.value, wanted[tp.topic][1])
                    if subject:
                        customers.add(subject)
                if records and records[-1].offset >= end[tp] - 1:
                    left.discard(tp)
                    consumer.pause(tp)
    return customers


def _erased_subject(value: bytes | None, event_type: str) -> str | None:
    try:
        event = json.loads(value or b"")
    except ValueError:
        return None  # the services dead-letter it: it erased no one
    if not isinstance(event, dict) or event.get("type") != event_type:
        return None
    subject = event.get("subject")
    return subject if isinstance(subject, str) and subject else None


async def reset_group(
    options: dict[str, Any], group: str, topics: list[str], saved: Offsets
) -> int:
    """Commit the snapshot's offsets for `group` (a partition it had none for: the log start,
    where the service would have begun). Returns how many partitions were set."""
    async with admin_client(options) as admin:
        partitions = [tp for name in topics for tp in await partitions_of(admin, name)]
    async with consumer_client(options, group_id=group) as consumer:
        consumer.assign(partitions)
        begin = await consumer.beginning_offsets(partitions)
        offsets = {
            tp: max(saved.get(tp.topic, {}).get(str(tp.partition), begin[tp]), begin[tp])
            for tp in partitions
        }
        await retry_coordinator(lambda: consumer.commit(offsets))
    return len(offsets)


def lost_offsets(saved: Offsets, begin: Mapping[TopicPartition, int]) -> list[str]:
    """Partitions whose snapshot offset is no longer in the log (retention passed)."""
    return [
        f"{tp.topic}/{tp.partition}: {saved[tp.topic][str(tp.partition)]} < log start {start}"
        for tp, start in sorted(begin.items())
        if str(tp.partition) in saved.get(tp.topic, {})
        and saved[tp.topic][str(tp.partition)] < start
    ]


# -- MongoDB ---------------------------------------------------------------------------------
def raw_collection(
    database: AsyncDatabase[dict[str, Any]], name: str
) -> AsyncCollection[RawBSONDocument]:
    """Documents as their BSON bytes: dumped and loaded unchanged (types, order, sealed bytes)."""
    return cast(
        "AsyncCollection[RawBSONDocument]", database.get_collection(name, codec_options=RAW)
    )


async def dump_collections(
    database: AsyncDatabase[dict[str, Any]],
    names: list[str],
    directory: Path,
    folder: str,
    progress: Progress,
) -> dict[str, FileEntry]:
    """Write `names` to `directory/folder/<name>.bson` inside one snapshot transaction: every
    collection as of the same instant (a batch's writes, inbox and outbox all or none)."""
    (directory / folder).mkdir(parents=True, exist_ok=True)
    entries: dict[str, FileEntry] = {}
    async with database.client.start_session() as session:
        await session.start_transaction(read_concern=ReadConcern("snapshot"))
        try:
            for name in names:
                collection = raw_collection(database, name)
                total = await collection.count_documents({}, session=session)
                advance = progress.task(f"{database.name}.{name}", total)
                relative = f"{folder}/{name}.bson"
                digest, count, size = hashlib.sha256(), 0, 0
                with (directory / relative).open("wb") as out:
                    async for document in collection.find({}, session=session, sort=[("_id", 1)]):
                        raw = document.raw
                        out.write(raw)
                        digest.update(raw)
                        count += 1
                        size += len(raw)
                        if count % BATCH == 0:
                            advance(BATCH)
                advance(count % BATCH)
                entries[name] = FileEntry(relative, count, size, digest.hexdigest())
        finally:
            await session.abort_transaction()  # read only: nothing to commit
    return entries


async def data_collections(database: AsyncDatabase[dict[str, Any]]) -> list[str]:
    names = await database.list_collection_names()
    return sorted(n for n in names if n not in NOT_BACKED_UP and not n.startswith("system."))


async def load_file(
    database: AsyncDatabase[dict[str, Any]], name: str, path: Path, advance: Callable[[int], None]
) -> int:
    collection = raw_collection(database, name)
    count = 0
    with path.open("rb") as stream:
        batch: list[RawBSONDocument] = []
        for document in bson.decode_file_iter(stream, codec_options=RAW):
            batch.append(document)
            if len(batch) == BATCH:
                await collection.insert_many(batch, ordered=False)
                count += len(batch)
                advance(len(batch))
                batch = []
        if batch:
            await collection.insert_many(batch, ordered=False)
            count += len(batch)
            advance(len(batch))
    return count


async def has_documents(database: AsyncDatabase[dict[str, Any]]) -> list[str]:
    names = await database.list_collection_names()
    return [n for n in sorted(names) if await database[n].find_one({}, {"_id": 1}) is not None]


def tombstone(now: datetime) -> dict[str, Any]:
    """A destroyed data key, as `crm_runtime.crypto.CustomerKeys.destroy` writes it (`wrapped`
    None: the cipher is destroyed, and no key is made for the customer again)."""
    return {"wrapped": None, "key_id": None, "destroyed_at": now}


async def destroy_keys(
    database: AsyncDatabase[dict[str, Any]], customers: Iterable[str], now: datetime
) -> int:
    """Tombstones for `customers` (upserted: a customer with no key gets none later either)."""
    ids = sorted(set(customers))
    if not ids:
        return 0
    result = await database[KEYS_COLLECTION].bulk_write(
        [UpdateOne({"_id": customer}, {"$set": tombstone(now)}, upsert=True) for customer in ids],
        ordered=False,
    )
    return result.modified_count + result.upserted_count


def read_documents(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of a backup file, decoded (for inspection and drills)."""
    with path.open("rb") as stream:
        yield from bson.decode_file_iter(stream, codec_options=CodecOptions(tz_aware=True))


# -- the commands ----------------------------------------------------------------------------
@dataclass
class BackupReport:
    data: Path
    keys: Path
    manifest: Manifest
    pruned: list[Path]


async def take_backup(
    options: dict[str, Any],
    mongodb_url: str,
    chosen: list[Target],
    data_root: Path,
    key_root: Path,
    retention: timedelta,
    progress: Progress,
) -> BackupReport:
    """Offsets first, then each service's snapshot, then the keys (see ADR 0013 for why)."""
    check_apart(data_root, key_root)
    started = datetime.now(UTC)
    identifier = backup_id(started)
    data_dir, key_dir = data_root / identifier, key_root / identifier
    marks = {PRIVACY.name: await end_offsets(options, PRIVACY.name)}
    services: dict[str, ServiceEntry] = {}
    async with admin_client(options) as admin:
        for target in chosen:
            offsets = await committed_offsets(admin, target.group, topic_names(target.service))
            services[target.service] = ServiceEntry(target.database, target.group, offsets)
    client = mongo_client(mongodb_url)
    try:
        data_dir.mkdir(parents=True, exist_ok=False)
        for target in chosen:
            database = client[target.database]
            names = await data_collections(database)
            services[target.service].collections = await dump_collections(
                database, names, data_dir, target.service, progress
            )
        manifest = Manifest(
            "data", identifier, started, datetime.now(UTC), redact_url(mongodb_url), services, marks
        )
        manifest.write(data_dir)
        key_dir.mkdir(parents=True, exist_ok=False)
        keys: dict[str, ServiceEntry] = {}
        keys_at = datetime.now(UTC)
        for target in chosen:
            entries = await dump_collections(
                client[target.database], [KEYS_COLLECTION], key_dir, target.service, progress
            )
            keys[target.service] = ServiceEntry(target.database, target.group, {}, entries)
        Manifest("keys", identifier, keys_at, datetime.now(UTC), manifest.store, keys).write(
            key_dir
        )
    except PyMongoError as exc:
        raise CliError(f"MongoDB at {redact_url(mongodb_url)}: {exc}", EXIT_INVALID) from exc
    finally:
        await client.close()
    pruned = prune_key_backups(key_root, retention, datetime.now(UTC))
    return BackupReport(data_dir, key_dir, manifest, pruned)


@dataclass
class RestoreReport:
    documents: dict[str, int]
    keys: Path | None
    erased: set[str]
    partitions: int
    warnings: list[str]


async def restore(
    options: dict[str, Any],
    mongodb_url: str,
    data_dir: Path,
    key_root: Path | None,
    services: list[str],
    *,
    drop: bool,
    without_keys: bool,
    progress: Progress,
) -> RestoreReport:
    manifest = Manifest.read(data_dir)
    if manifest.kind != "data":
        raise CliError(f"{data_dir} is a {manifest.kind} backup, not a data backup")
    problems = verify(data_dir, manifest, services)
    if problems:
        raise CliError(
            f"backup {data_dir} is not sound, nothing restored: " + "; ".join(problems),
            EXIT_INVALID,
        )
    chosen_keys = choose_key_backup(key_root, manifest.taken_at, services) if key_root else None
    if chosen_keys is None and not without_keys:
        raise CliError(
            f"no key backup of {', '.join(services)} taken at or after "
            f"{manifest.taken_at.isoformat()} in {key_root}: "
            "without one every customer's sealed fields stay unreadable; pass --without-keys "
            "to restore the figures anyway",
            EXIT_USAGE,
        )
    if chosen_keys is not None:
        key_problems = verify(chosen_keys[0], chosen_keys[1], services)
        if key_problems:
            raise CliError(
                f"key backup {chosen_keys[0]} is not sound, nothing restored: "
                + "; ".join(key_problems),
                EXIT_INVALID,
            )
    warnings: list[str] = []
    async with admin_client(options) as admin:
        for service in services:
            group = manifest.services[service].group
            if await group_members(admin, group):
                raise CliError(
                    f"{service} is running (consumer group {group} has members): stop it first",
                    EXIT_USAGE,
                )
    client = mongo_client(mongodb_url)
    documents: dict[str, int] = {}
    try:
        for service in services:
            database = client[manifest.services[service].database]
            if drop:
                await client.drop_database(database.name)
            filled = await has_documents(database)
            if filled:
                raise CliError(
                    f"database {database.name} is not empty ({', '.join(filled)}): "
                    "restore into an empty one, or pass --drop",
                    EXIT_USAGE,
                )
        for service in services:
            entry = manifest.services[service]
            database = client[entry.database]
            count = 0
            for name, item in entry.collections.items():
                advance = progress.task(f"{entry.database}.{name}", item.documents)
                count += await load_file(database, name, data_dir / item.file, advance)
            if chosen_keys is not None:
                item = chosen_keys[1].services[service].collections[KEYS_COLLECTION]
                advance = progress.task(f"{entry.database}.{KEYS_COLLECTION}", item.documents)
                await load_file(database, KEYS_COLLECTION, chosen_keys[0] / item.file, advance)
            documents[service] = count
        members_from = _earliest(
            manifest.services[s].offsets.get(MEMBERS.name, {}) for s in services
        )
        erased = await erasures_since(options, members_from, manifest.marks.get(PRIVACY.name, {}))
        now = datetime.now(UTC)
        for service in services:
            await destroy_keys(client[manifest.services[service].database], erased, now)
    except PyMongoError as exc:
        raise CliError(f"MongoDB at {redact_url(mongodb_url)}: {exc}", EXIT_INVALID) from exc
    finally:
        await client.close()
    partitions = 0
    for service in services:
        entry = manifest.services[service]
        topics = topic_names(service)
        async with admin_client(options) as admin:
            all_partitions = [tp for name in topics for tp in await partitions_of(admin, name)]
        async with consumer_client(options) as consumer:
            begin = await consumer.beginning_offsets(all_partitions)
        warnings += [f"{service}: {lost}" for lost in lost_offsets(entry.offsets, begin)]
        partitions += await reset_group(options, entry.group, topics, entry.offsets)
    return RestoreReport(
        documents, chosen_keys[0] if chosen_keys else None, erased, partitions, warnings
    )


def _earliest(offset_maps: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per partition, the smallest offset any of the maps has (a partition missing from one map
    is read from the log start)."""
    maps = list(offset_maps)
    partitions = set().union(*(m.keys() for m in maps)) if maps else set()
    return {p: min(m[p] for m in maps) for p in partitions if all(p in m for m in maps)}

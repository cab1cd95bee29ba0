"""`crm backup` / `crm restore` without a broker or a database: selection, manifests and their
checksums, which key backup a restore takes, retention of the key backups (ADR 0013)."""

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bson
import pytest
from typer.testing import CliRunner

from crm_cli import backup
from crm_cli.errors import CliError
from crm_cli.main import app
from crm_runtime.crypto import KeyRing, cipher_from_document

pytestmark = pytest.mark.unit
runner = CliRunner()
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
RING = KeyRing({"k1": os.urandom(32)}, "k1", os.urandom(32))


def write_backup(
    root: Path,
    kind: str,
    at: datetime,
    files: dict[str, dict[str, list[dict[str, object]]]],
    offsets: backup.Offsets | None = None,
) -> Path:
    """A backup folder as `crm backup` writes it: service -> collection -> documents."""
    identifier = backup.backup_id(at)
    directory = root / identifier
    services: dict[str, backup.ServiceEntry] = {}
    for service, collections in files.items():
        (directory / service).mkdir(parents=True)
        entry = backup.ServiceEntry(f"crm_{service}", service, offsets or {})
        for name, documents in collections.items():
            data = b"".join(bson.encode(document) for document in documents)
            path = directory / service / f"{name}.bson"
            path.write_bytes(data)
            entry.collections[name] = backup.FileEntry(
                f"{service}/{name}.bson", len(documents), len(data), backup.sha256_of(path)
            )
        services[service] = entry
    backup.Manifest(kind, identifier, at, at, "mongodb://db:27017", services).write(directory)
    return directory


def key_document(customer: str) -> dict[str, object]:
    key = os.urandom(32)
    key_id, wrapped = RING.wrap(key, customer)
    return {"_id": customer, "key_id": key_id, "wrapped": wrapped, "created_at": T0}


# -- what is backed up -----------------------------------------------------------------------
def test_all_selects_every_service_with_its_default_database_and_group() -> None:
    chosen = backup.targets("all", {})
    assert [(t.service, t.database, t.group) for t in chosen] == [
        ("archive", "crm_archive", "archive"),
        ("tickets", "crm_tickets", "tickets"),
        ("loyalty", "crm_loyalty", "loyalty"),
        ("notify", "crm_notify", "notify"),
        ("relations", "crm_relations", "relations"),
    ]


def test_a_service_database_and_group_come_from_the_services_own_variables() -> None:
    environ = {"CRM_LOYALTY_DATABASE": "crm_loyalty_x", "CRM_LOYALTY_CONSUMER_GROUP": "loy-x"}
    assert backup.targets("loyalty", environ) == [
        backup.Target("loyalty", "crm_loyalty_x", "loy-x")
    ]


def test_an_unknown_service_is_a_usage_error_naming_the_known_ones() -> None:
    with pytest.raises(CliError, match="one of: archive, tickets, loyalty, notify"):
        backup.targets("billing", {})


def test_the_keys_and_the_locks_are_not_in_the_data_backup() -> None:
    assert set(backup.NOT_BACKED_UP) == {"data_keys", "locks"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90))],
)
def test_a_retention_reads_days_hours_and_minutes(text: str, expected: timedelta) -> None:
    assert backup.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "0d", "-1d", "thirty days", "1w"])
def test_a_retention_without_a_unit_or_not_positive_is_refused(text: str) -> None:
    with pytest.raises(CliError, match="invalid duration"):
        backup.parse_duration(text)


def test_the_manifest_names_the_store_without_credentials_or_options() -> None:
    url = "mongodb://ops:s3cret@db1:27017,db2:27017/?replicaSet=rs0&tls=true"
    assert backup.redact_url(url) == "mongodb://db1:27017,db2:27017"


def test_key_backups_inside_the_data_backups_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="kept apart"):
        backup.check_apart(tmp_path, tmp_path / "keys")
    with pytest.raises(CliError, match="kept apart"):
        backup.check_apart(tmp_path, tmp_path)
    backup.check_apart(tmp_path / "data", tmp_path / "keys")


# -- manifests -------------------------------------------------------------------------------
def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    offsets = {"orders.v1": {"0": 12, "3": 40}}
    directory = write_backup(
        tmp_path, "data", T0, {"loyalty": {"accounts": [{"_id": "c1", "balance": 5}]}}, offsets
    )
    manifest = backup.Manifest.read(directory)
    assert manifest.taken_at == T0
    entry = manifest.services["loyalty"]
    assert entry.offsets == offsets
    assert entry.collections["accounts"].documents == 1
    assert json.loads((directory / "manifest.json").read_text())["store"] == "mongodb://db:27017"
    assert backup.verify(directory, manifest, ["loyalty"]) == []


def test_a_changed_byte_a_missing_file_and_a_missing_service_are_each_reported(
    tmp_path: Path,
) -> None:
    directory = write_backup(
        tmp_path,
        "data",
        T0,
        {"loyalty": {"accounts": [{"_id": "c1", "balance": 5}], "ledger": [{"_id": "e1"}]}},
    )
    accounts = directory / "loyalty" / "accounts.bson"
    data = bytearray(accounts.read_bytes())
    data[-2] ^= 0x01
    accounts.write_bytes(bytes(data))
    (directory / "loyalty" / "ledger.bson").unlink()
    problems = backup.verify(directory, backup.Manifest.read(directory), ["loyalty", "notify"])
    assert problems == [
        "loyalty/accounts.bson: checksum differs (corrupt or changed)",
        "loyalty/ledger.bson: missing",
        "notify: not in this backup",
    ]


def test_restore_refuses_a_corrupt_backup_before_touching_anything(tmp_path: Path) -> None:
    directory = write_backup(tmp_path / "data", "data", T0, {"loyalty": {"accounts": [{"_id": 1}]}})
    accounts = directory / "loyalty" / "accounts.bson"
    accounts.write_bytes(accounts.read_bytes()[:-1] + b"\x01")
    result = runner.invoke(
        app,
        [
            "restore",
            str(directory),
            "--service",
            "loyalty",
            "--keys-to",
            str(tmp_path / "keys"),
            "--bootstrap",
            "127.0.0.1:1",
            "--mongodb-url",
            "mongodb://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 1
    assert "is not sound, nothing restored: loyalty/accounts.bson: checksum differs" in (
        result.stderr
    )


def test_restore_without_a_key_backup_says_the_sealed_fields_stay_unreadable(
    tmp_path: Path,
) -> None:
    directory = write_backup(tmp_path / "data", "data", T0, {"loyalty": {"accounts": [{"_id": 1}]}})
    write_backup(tmp_path / "keys", "keys", T0 - timedelta(hours=1), {"loyalty": {"data_keys": []}})
    result = runner.invoke(
        app,
        [
            "restore",
            str(directory),
            "--service",
            "loyalty",
            "--keys-to",
            str(tmp_path / "keys"),
            "--bootstrap",
            "127.0.0.1:1",
        ],
    )
    assert result.exit_code == 2
    assert "no key backup of loyalty taken at or after 2026-11-01T02:00:00+00:00" in result.stderr
    assert "sealed fields stay unreadable" in result.stderr


# -- key backups: which one, and for how long -------------------------------------------------
def test_a_restore_takes_the_newest_key_backup_not_older_than_the_data(tmp_path: Path) -> None:
    for hours in (-1, 0, 5, 30):
        write_backup(tmp_path, "keys", T0 + timedelta(hours=hours), {"archive": {"data_keys": []}})
    write_backup(tmp_path, "data", T0 + timedelta(hours=40), {"archive": {"customers": []}})
    chosen = backup.choose_key_backup(tmp_path, T0, ["archive"])
    assert chosen is not None
    assert chosen[1].taken_at == T0 + timedelta(hours=30)
    assert backup.choose_key_backup(tmp_path, T0 + timedelta(hours=31), ["archive"]) is None


def test_a_newer_key_backup_of_fewer_services_does_not_hide_a_complete_one(tmp_path: Path) -> None:
    both: dict[str, dict[str, list[dict[str, object]]]] = {
        "archive": {"data_keys": []},
        "loyalty": {"data_keys": []},
    }
    write_backup(tmp_path, "keys", T0, both)
    write_backup(tmp_path, "keys", T0 + timedelta(hours=1), {"loyalty": {"data_keys": []}})
    chosen = backup.choose_key_backup(tmp_path, T0, ["archive", "loyalty"])
    assert chosen is not None
    assert chosen[1].taken_at == T0
    only_loyalty = backup.choose_key_backup(tmp_path, T0, ["loyalty"])
    assert only_loyalty is not None
    assert only_loyalty[1].taken_at == T0 + timedelta(hours=1)


def test_prune_deletes_only_the_key_backups_older_than_the_retention(tmp_path: Path) -> None:
    for days in (0, 10, 29):
        write_backup(tmp_path, "keys", T0 + timedelta(days=days), {"archive": {"data_keys": []}})
    now = T0 + timedelta(days=40, minutes=1)
    deleted = backup.prune_key_backups(tmp_path, timedelta(days=30), now)
    assert [path.name for path in deleted] == [
        backup.backup_id(T0),
        backup.backup_id(T0 + timedelta(days=10)),
    ]
    assert [m.taken_at for _, m in backup.key_backups(tmp_path)] == [T0 + timedelta(days=29)]


def test_once_the_retention_passed_no_key_backup_opens_an_erased_customer(tmp_path: Path) -> None:
    """Backed up on day 0 (both customers' keys), `erased` erased on day 1, backed up again on
    day 2 (a tombstone). Until day 30 the day-0 key backup still opens the erased customer's
    name in the day-0 data backup; the prune on day 30 + 1 min deletes it, and what remains
    opens only the customer who was not erased."""
    keys = {c: key_document(c) for c in ("erased", "kept")}
    ciphers = {c: cipher_from_document(RING, d) for c, d in keys.items()}
    data = write_backup(
        tmp_path / "data",
        "data",
        T0,
        {
            "archive": {
                "customers": [
                    {"_id": c, "pii": {"name": ciphers[c].seal("name", f"name of {c}")}}
                    for c in keys
                ]
            }
        },
    )
    key_root = tmp_path / "keys"
    write_backup(key_root, "keys", T0, {"archive": {"data_keys": list(keys.values())}})
    day2 = [{"_id": "erased", **backup.tombstone(T0 + timedelta(days=1))}, keys["kept"]]
    write_backup(key_root, "keys", T0 + timedelta(days=2), {"archive": {"data_keys": day2}})
    sealed = {
        doc["_id"]: doc["pii"]["name"]
        for doc in backup.read_documents(data / "archive" / "customers.bson")
    }

    def readable(customer: str) -> list[str | None]:
        """What every key backup still on disk opens of the customer's name."""
        opened = []
        for path, manifest in backup.key_backups(key_root):
            item = manifest.services["archive"].collections["data_keys"]
            for doc in backup.read_documents(path / item.file):
                if doc["_id"] == customer:
                    opened.append(cipher_from_document(RING, doc).open("name", sealed[customer]))
        return opened

    assert readable("erased") == ["name of erased", None], "within the retention: still readable"
    backup.prune_key_backups(key_root, timedelta(days=30), T0 + timedelta(days=29))
    assert readable("erased") == ["name of erased", None]
    backup.prune_key_backups(key_root, timedelta(days=30), T0 + timedelta(days=30, minutes=1))
    assert readable("erased") == [None], "past the retention: no key opens it"
    assert readable("kept") == ["name of kept"]


def test_the_tombstone_a_restore_writes_is_read_by_the_services_as_a_destroyed_key() -> None:
    cipher = cipher_from_document(RING, {"_id": "c1", **backup.tombstone(T0)})
    assert cipher.destroyed
    assert cipher.seal("name", "李雷") is None


# -- erasures since the snapshot -------------------------------------------------------------
def event(event_type: str, subject: str) -> bytes:
    return json.dumps({"type": event_type, "subject": subject, "id": "e"}).encode()


def test_only_erasure_events_with_a_subject_name_a_customer_to_erase() -> None:
    requested = "customer.erasure_requested"
    assert backup._erased_subject(event(requested, "c1"), requested) == "c1"
    assert backup._erased_subject(event("customer.registered", "c1"), requested) is None
    assert backup._erased_subject(event(requested, ""), requested) is None
    assert backup._erased_subject(b"not json", requested) is None
    assert backup._erased_subject(None, requested) is None


def test_members_are_read_from_the_earliest_offset_of_any_restored_service() -> None:
    maps = [{"0": 10, "1": 7}, {"0": 4, "1": 9, "2": 3}]
    assert backup._earliest(maps) == {"0": 4, "1": 7}, "partition 2: from the log start"


def test_an_offset_the_log_no_longer_holds_is_reported() -> None:
    from aiokafka import TopicPartition

    saved = {"members.v1": {"0": 5, "1": 50}}
    begin = {TopicPartition("members.v1", 0): 20, TopicPartition("members.v1", 1): 20}
    assert backup.lost_offsets(saved, begin) == ["members.v1/0: 5 < log start 20"]

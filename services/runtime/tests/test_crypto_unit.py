"""Field encryption, key configuration and transport security, without a database or broker."""

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from faststream.security import BaseSecurity, SASLScram512

from crm_runtime.crypto import (
    FieldCipher,
    KeyConfigError,
    KeyRing,
    MasterKeyMissingError,
    new_key_file_content,
)
from crm_runtime.kafka import broker_security
from crm_runtime.settings import ServiceSettings

pytestmark = pytest.mark.unit


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def ring(*names: str, current: str | None = None) -> KeyRing:
    keys = {name: b64(os.urandom(32)) for name in names}
    return KeyRing.from_config(keys=keys, current=current or names[-1], index_key=b64(b"i" * 32))


def test_a_sealed_field_opens_to_the_same_text_and_does_not_contain_it() -> None:
    cipher = FieldCipher("c-1", os.urandom(32))
    sealed = cipher.seal("name", "张三 13800138000")
    assert sealed is not None
    assert b"13800138000" not in sealed
    assert "张三".encode() not in sealed
    assert cipher.open("name", sealed) == "张三 13800138000"
    assert cipher.seal("name", "same") != cipher.seal("name", "same")  # a fresh nonce each time


def test_a_sealed_value_does_not_open_as_another_customer_or_field_or_with_another_key() -> None:
    key = os.urandom(32)
    sealed = FieldCipher("c-1", key).seal("email", "a@example.com")
    with pytest.raises(InvalidTag):
        FieldCipher("c-2", key).open("email", sealed)  # copied to another customer
    with pytest.raises(InvalidTag):
        FieldCipher("c-1", key).open("phone", sealed)  # moved to another field
    with pytest.raises(InvalidTag):
        FieldCipher("c-1", os.urandom(32)).open("email", sealed)


def test_a_value_stored_before_encryption_reads_as_it_is_and_is_sealed_when_written() -> None:
    cipher = FieldCipher("c-1", os.urandom(32))
    assert cipher.open("name", "Li Lei") == "Li Lei"
    assert isinstance(cipher.seal("name", cipher.open("name", "Li Lei")), bytes)
    assert FieldCipher("c-1", None).open("name", "Li Lei") == "Li Lei", "no key yet: still read"
    erased = FieldCipher("c-1", None, destroyed=True)
    assert erased.open("name", "Li Lei") is None, "erased: not even old plaintext"


def test_a_shredded_key_seals_nothing_and_opens_nothing() -> None:
    sealed = FieldCipher("c-1", os.urandom(32)).seal("name", "Li Lei")
    shredded = FieldCipher("c-1", None, destroyed=True)
    assert shredded.shredded
    assert shredded.seal("name", "Li Lei") is None
    assert shredded.open("name", sealed) is None


def test_a_data_key_wrapped_under_an_old_master_key_still_unwraps_after_rotation() -> None:
    old = ring("k1")
    data_key = os.urandom(32)
    key_id, wrapped = old.wrap(data_key, "c-1")
    assert key_id == "k1"
    rotated = KeyRing({**old.master_keys, "k2": os.urandom(32)}, "k2", b"i" * 32)
    assert rotated.unwrap(key_id, wrapped, "c-1") == data_key
    assert rotated.wrap(data_key, "c-1")[0] == "k2"
    with pytest.raises(InvalidTag):
        rotated.unwrap(key_id, wrapped, "c-2")  # a wrapped key is bound to its customer
    without_old = KeyRing({"k2": rotated.master_keys["k2"]}, "k2", b"i" * 32)
    with pytest.raises(MasterKeyMissingError, match=r"master key 'k1', which this process"):
        without_old.unwrap(key_id, wrapped, "c-1")


def test_lookup_hashes_are_stable_separate_by_purpose_and_depend_on_the_index_key() -> None:
    first = ring("k1")
    assert first.blind("phone", "13800138000") == first.blind("phone", "13800138000")
    assert first.blind("phone", "13800138000") != first.blind("email", "13800138000")
    other = KeyRing({"k1": os.urandom(32)}, "k1", b"j" * 32)
    assert other.blind("phone", "13800138000") != first.blind("phone", "13800138000")
    assert "13800138000" not in first.blind("phone", "13800138000")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"keys": {}}, "no master key"),
        ({"keys": {"k1": "not base64!"}}, "not base64"),
        ({"keys": {"k1": b64(b"short")}}, "must be 32 bytes"),
        ({"keys": {"k1": b64(b"a" * 32), "k2": b64(b"b" * 32)}}, "CRM_MASTER_KEY_ID"),
        ({"keys": {"k1": b64(b"a" * 32)}, "current": "k9"}, "'k9' is not among"),
        ({"keys": {"k1": b64(b"a" * 32)}, "index_key": ""}, "no index key"),
    ],
)
def test_missing_or_malformed_keys_refuse_to_start_with_a_clear_message(
    config: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"index_key": b64(b"i" * 32), **config}
    with pytest.raises(KeyConfigError, match=message):
        KeyRing.from_config(**arguments)  # type: ignore[arg-type]


def test_a_key_file_is_read_and_the_environment_adds_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    content = new_key_file_content()
    path.write_text(json.dumps(content))
    from_file = KeyRing.from_config(keys={}, keys_file=str(path))
    assert from_file.current == content["current"]
    rotated = KeyRing.from_config(
        keys={"k-new": b64(os.urandom(32))}, current="k-new", keys_file=str(path)
    )
    assert set(rotated.master_keys) == {content["current"], "k-new"}
    assert rotated.current == "k-new"
    with pytest.raises(KeyConfigError, match="cannot read the key file"):
        KeyRing.from_config(keys={}, keys_file=str(tmp_path / "missing.json"))


class Settings(ServiceSettings):
    service = "demo"


def test_kafka_sasl_scram_over_tls_and_mongodb_tls_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "crm-archive")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("MONGODB_TLS_CA_FILE", "/etc/crm/mongo-ca.pem")
    monkeypatch.setenv("MONGODB_USERNAME", "crm_archive")
    monkeypatch.setenv("MONGODB_PASSWORD", "m0ngo")
    settings = Settings()
    security = broker_security(settings)
    assert isinstance(security, SASLScram512)
    assert security.use_ssl
    assert security.ssl_context is not None
    options = settings.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_password"] == "s3cret"
    assert settings.mongodb_options() == {
        "tls": True,
        "tlsCAFile": "/etc/crm/mongo-ca.pem",
        "username": "crm_archive",
        "password": "m0ngo",
    }
    assert "s3cret" not in repr(settings)
    assert "m0ngo" not in repr(settings)


def test_plaintext_is_the_default_and_tls_alone_needs_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert broker_security(Settings()) is None
    assert Settings().mongodb_options() == {}
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    security = broker_security(Settings())
    assert type(security) is BaseSecurity
    assert security.use_ssl

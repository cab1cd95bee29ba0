"""Field encryption at rest: a data key per customer, wrapped by a master key (envelope encryption).

- Every personal field is sealed with AES-256-GCM under its customer's data key, with the customer
  id and the field name as associated data (a value copied to another customer or field does not
  open). Stored as `bytes`: version (1) + nonce (12) + ciphertext and tag.
- Data keys live in the service's `data_keys` collection, each wrapped (AES-GCM) by the current
  master key; master keys come from the environment or a secret file, never from the database.
  Rotation in two phases (deploy/SECURITY.md): give every replica the new master key, then make it
  current; `rewrap` (`POST /ops/keys/rewrap`) moves old data keys to it; old master keys stay
  configured until nothing is wrapped by them. A data key under a master key this process does
  not hold is a configuration fault (`MasterKeyMissingError`, transient): retried, never taken
  for bad data.
- Erasure destroys the customer's data key (crypto-shredding): every copy of their sealed fields,
  backups included, becomes unreadable, and nothing is sealed for them again.
- Phone and email lookups go through keyed hashes (HMAC-SHA-256 under a separate index key), so
  equality search works without the value.
"""

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pymongo import UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from crm_runtime.errors import TransientError
from crm_runtime.mongo import Document, find_by_ids

VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class KeyConfigError(ValueError):
    """The master keys are missing or malformed: the service refuses to start."""


class MasterKeyMissingError(TransientError):
    """A data key is wrapped by a master key this process does not hold: a configuration fault
    (a rotation whose new key has not reached every replica yet), not bad data. Transient: the
    consumer retries without committing and readiness names the key id (never the key); a
    replica that holds the key, or this one restarted with it, reads the data."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(
            f"a data key is wrapped by master key {key_id!r}, which this process does not hold: "
            "give every replica every master key in use (deploy/SECURITY.md, key rotation)"
        )


def _decode_key(name: str, value: str) -> bytes:
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise KeyConfigError(f"master key {name!r} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise KeyConfigError(f"key {name!r} must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def new_key_file_content() -> dict[str, Any]:
    """A fresh key file: one master key and an index key (what `crm_runtime.crypto` reads)."""
    key_id = datetime.now(UTC).strftime("k%Y%m%d")
    return {
        "current": key_id,
        "keys": {key_id: base64.b64encode(os.urandom(KEY_BYTES)).decode()},
        "index_key": base64.b64encode(os.urandom(KEY_BYTES)).decode(),
    }


class KeyRing:
    """The master keys (id -> key), which one wraps new data keys, and the lookup-hash key."""

    def __init__(self, master_keys: Mapping[str, bytes], current: str, index_key: bytes) -> None:
        if current not in master_keys:
            raise KeyConfigError(f"the current master key {current!r} is not among the keys")
        self.master_keys = dict(master_keys)
        self.current = current
        self._index_key = index_key
        self._wrapping = {name: AESGCM(key) for name, key in self.master_keys.items()}
        """One AES-GCM per master key, made once (making one costs twice an encryption)."""

    @classmethod
    def from_config(
        cls,
        *,
        keys: Mapping[str, str],
        current: str = "",
        index_key: str = "",
        keys_file: str = "",
    ) -> "KeyRing":
        """Keys from a secret file (`{"current", "keys", "index_key"}`) and/or the environment;
        the environment wins."""
        merged: dict[str, str] = {}
        file_current = file_index = ""
        if keys_file:
            try:
                content = json.loads(Path(keys_file).read_text())
            except (OSError, ValueError) as exc:
                raise KeyConfigError(f"cannot read the key file {keys_file}: {exc}") from exc
            merged.update(content.get("keys", {}))
            file_current = content.get("current", "")
            file_index = content.get("index_key", "")
        merged.update(keys)
        if not merged:
            raise KeyConfigError(
                "no master key: set CRM_MASTER_KEYS_FILE or CRM_MASTER_KEYS "
                "(see deploy/SECURITY.md)"
            )
        current = current or file_current or (next(iter(merged)) if len(merged) == 1 else "")
        if not current:
            raise KeyConfigError("several master keys: set CRM_MASTER_KEY_ID to the current one")
        index = index_key or file_index
        if not index:
            raise KeyConfigError("no index key: set CRM_INDEX_KEY or index_key in the key file")
        return cls(
            {name: _decode_key(name, value) for name, value in merged.items()},
            current,
            _decode_key("index_key", index),
        )

    def wrap(self, data_key: bytes, customer_id: str) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._wrapping[self.current].encrypt(nonce, data_key, customer_id.encode())
        return self.current, nonce + sealed

    def unwrap(self, key_id: str, wrapped: bytes, customer_id: str) -> bytes:
        master = self._wrapping.get(key_id)
        if master is None:
            raise MasterKeyMissingError(key_id)
        return master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], customer_id.encode())

    def blind(self, purpose: str, value: str) -> str:
        """A keyed hash for equality lookups (`purpose` separates phone from email...)."""
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()[:40]


@dataclass(frozen=True)
class FieldCipher:
    """One customer's data key: seals and opens that customer's fields.

    `field` names the value's place (e.g. `N-42/body`): it is the associated data with the
    customer id, so a sealed value moved to another customer, record or field does not open."""

    customer_id: str
    key: bytes | None
    """None when the customer has no key yet (read-only use) or it was destroyed."""
    destroyed: bool = False
    """The customer was erased: nothing opens (not even old plaintext), nothing is sealed."""

    @property
    def shredded(self) -> bool:
        return self.destroyed

    @cached_property
    def _aead(self) -> AESGCM:
        """Made once per cipher: a customer's nine fields are sealed with one."""
        assert self.key is not None
        return AESGCM(self.key)

    def _aad(self, field: str) -> bytes:
        return f"{self.customer_id}/{field}".encode()

    def seal(self, field: str, value: str | None) -> bytes | None:
        if value is None or self.key is None or self.destroyed:
            return None
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, value.encode(), self._aad(field))

    def open(self, field: str, sealed: Any) -> str | None:
        """The plaintext, or None if there is none or the key was destroyed. A `str` is a value
        written before encryption was introduced: read as it is, sealed at its next write."""
        if sealed is None or self.destroyed:
            return None
        if isinstance(sealed, str):
            return sealed
        if self.key is None:
            return None
        blob = bytes(sealed)
        if blob[:1] != VERSION:
            raise ValueError(f"{field}: not a sealed value")
        nonce, sealed_text = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        return self._aead.decrypt(nonce, sealed_text, self._aad(field)).decode()


SHREDDED = FieldCipher("", None, destroyed=True)
"""What a save uses for a customer erased in the same batch."""
NO_KEY = FieldCipher("", None)
"""For a record with nothing to seal or open (no key is read or made for it)."""


def cipher_from_document(ring: KeyRing, doc: Document) -> FieldCipher:
    """The cipher a `data_keys` document holds (a tombstone: a shredded one)."""
    if doc.get("wrapped") is None:
        return FieldCipher(doc["_id"], None, destroyed=True)
    return FieldCipher(doc["_id"], ring.unwrap(doc["key_id"], doc["wrapped"], doc["_id"]))


class CustomerKeys:
    """The `data_keys` collection: one wrapped data key per customer, or its tombstone."""

    def __init__(self, database: AsyncDatabase[Document], ring: KeyRing) -> None:
        self.collection: AsyncCollection[Document] = database["data_keys"]
        self.ring = ring
        self._failed: set[str] = set()
        """Master key ids seen in `rewrap` that this service does not hold."""

    async def ensure_indexes(self) -> None:
        await self.collection.create_index("key_id")

    def _cipher(self, doc: Document) -> FieldCipher:
        return cipher_from_document(self.ring, doc)

    async def ciphers(
        self,
        customer_ids: Iterable[str],
        *,
        create: bool = False,
        session: AsyncClientSession | None = None,
    ) -> dict[str, FieldCipher]:
        """The ciphers of these customers. A customer without a key gets a new one when `create`
        (to seal new data), else a cipher that opens nothing; a destroyed key stays destroyed."""
        wanted = sorted(set(customer_ids))
        if not wanted:
            return {}
        found = {
            doc["_id"]: doc async for doc in find_by_ids(self.collection, wanted, session=session)
        }
        missing = [customer_id for customer_id in wanted if customer_id not in found]
        made: dict[str, FieldCipher] = {}
        if missing and create:
            made = await self._create(missing)
        return {
            customer_id: made[customer_id]
            if customer_id in made
            else self._cipher(found[customer_id])
            if customer_id in found
            else FieldCipher(customer_id, None)  # no key yet: opens old plaintext only
            for customer_id in wanted
        }

    async def _create(self, customer_ids: list[str]) -> dict[str, FieldCipher]:
        """New data keys for customers that had none. Not in the caller's transaction: two
        writers racing keep the first key (`$setOnInsert`), and a key made for a batch that then
        failed is harmless (it seals nothing yet). The keys this call inserted are used as made;
        only those another writer inserted first are read back (a bulk import's batch of new
        customers costs one write, no read)."""
        now = datetime.now(UTC)
        keys = {customer_id: os.urandom(KEY_BYTES) for customer_id in customer_ids}
        operations = []
        for customer_id, key in keys.items():
            key_id, wrapped = self.ring.wrap(key, customer_id)
            document = {"key_id": key_id, "wrapped": wrapped, "created_at": now}
            operations.append(
                UpdateOne({"_id": customer_id}, {"$setOnInsert": document}, upsert=True)
            )
        result = await self.collection.bulk_write(operations, ordered=False)
        inserted = set((result.upserted_ids or {}).values()) & keys.keys()
        made = {
            customer_id: FieldCipher(customer_id, keys[customer_id]) for customer_id in inserted
        }
        others = [customer_id for customer_id in customer_ids if customer_id not in inserted]
        if others:
            async for doc in find_by_ids(self.collection, others):
                made[doc["_id"]] = self._cipher(doc)
        return made

    async def destroy(
        self, customer_ids: Iterable[str], *, session: AsyncClientSession | None = None
    ) -> None:
        """Crypto-shredding: drop the keys, keep a tombstone so none is made again."""
        ids = sorted(set(customer_ids))
        if not ids:
            return
        now = datetime.now(UTC)
        await self.collection.bulk_write(
            [
                UpdateOne(
                    {"_id": customer_id},
                    {"$set": {"wrapped": None, "key_id": None, "destroyed_at": now}},
                    upsert=True,
                )
                for customer_id in ids
            ],
            session=session,
        )

    async def rewrap(self, limit: int = 1000) -> tuple[int, int]:
        """Re-wrap up to `limit` data keys still under an old master key (key rotation).
        Returns (re-wrapped, failed): a key that does not unwrap (its master key is not
        configured) is counted and skipped, so it cannot block the others."""
        query = {
            "wrapped": {"$ne": None},
            "key_id": {"$ne": self.ring.current, "$nin": sorted(self._failed)},
        }
        operations = []
        failed = 0
        async for doc in self.collection.find(query, sort=[("_id", 1)], limit=limit):
            try:
                key = self.ring.unwrap(doc["key_id"], doc["wrapped"], doc["_id"])
            except (MasterKeyMissingError, InvalidTag):
                failed += 1
                if doc["key_id"] not in self.ring.master_keys:
                    self._failed.add(doc["key_id"])
                continue
            key_id, wrapped = self.ring.wrap(key, doc["_id"])
            operations.append(
                UpdateOne(
                    {"_id": doc["_id"], "key_id": doc["key_id"]},
                    {"$set": {"key_id": key_id, "wrapped": wrapped}},
                )
            )
        if operations:
            await self.collection.bulk_write(operations)
        return len(operations), failed

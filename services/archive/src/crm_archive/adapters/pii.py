"""The one place where the archive's personal data is written to and read from documents.

Every personal field is sealed with the customer's data key (`crm_runtime.crypto`); phone and
email lookups are keyed hashes of the normalised values. `source` (a channel name) and `type`
(person or company) stay plain.
"""

from datetime import date
from typing import Any

from crm_archive.domain.facts import Profile, normalise_email, normalise_phone
from crm_runtime.crypto import FieldCipher, KeyRing

SEALED = ("name", "phone", "email", "birthday", "gender", "city", "address", "company", "job_title")


def has_personal_data(profile: Profile) -> bool:
    """Whether there is anything to seal (a stub known only from orders has nothing)."""
    return any(getattr(profile, name) is not None for name in SEALED)


def profile_to_document(profile: Profile, cipher: FieldCipher) -> dict[str, Any]:
    plain = {
        "name": profile.name,
        "phone": profile.phone,
        "email": profile.email,
        "birthday": profile.birthday.isoformat() if profile.birthday else None,
        "gender": profile.gender,
        "city": profile.city,
        "address": profile.address,
        "company": profile.company,
        "job_title": profile.job_title,
    }
    return {
        **{name: cipher.seal(name, value) for name, value in plain.items()},
        "source": profile.source,
        "type": profile.type,
    }


def profile_from_document(document: dict[str, Any] | None, cipher: FieldCipher) -> Profile:
    document = document or {}
    opened = {name: cipher.open(name, document.get(name)) for name in SEALED}
    birthday = opened["birthday"]
    return Profile(
        name=opened["name"],
        phone=opened["phone"],
        email=opened["email"],
        birthday=date.fromisoformat(birthday) if birthday else None,
        gender=opened["gender"],
        city=opened["city"],
        source=document.get("source"),
        type=document.get("type") or "person",
        address=opened["address"],
        company=opened["company"],
        job_title=opened["job_title"],
    )


def lookup_keys(profile: Profile, ring: KeyRing) -> dict[str, str | None]:
    """What `GET /customers?q=` and duplicate detection search by: keyed hashes."""
    return {
        "phone": ring.blind("phone", normalise_phone(profile.phone)) if profile.phone else None,
        "email": ring.blind("email", normalise_email(profile.email)) if profile.email else None,
    }


def lookup_key_for_query(q: str, ring: KeyRing) -> tuple[str, str]:
    """(field, value) to search for a phone number or an email address typed by an agent."""
    if "@" in q:
        return "lookup.email", ring.blind("email", normalise_email(q))
    return "lookup.phone", ring.blind("phone", normalise_phone(q))

"""The one place where the archive's personal data is written to and read from documents.

Today the fields are stored as they are, and phone/email lookups use normalised values; the
privacy issue replaces these three functions with field encryption and keyed hashes.
"""

import re
from datetime import date
from typing import Any

from crm_archive.domain.customer import Profile


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return digits[-11:] if len(digits) > 11 else digits


def normalise_email(email: str) -> str:
    return email.strip().lower()


def profile_to_document(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "phone": profile.phone,
        "email": profile.email,
        "birthday": profile.birthday.isoformat() if profile.birthday else None,
        "gender": profile.gender,
        "city": profile.city,
        "source": profile.source,
    }


def profile_from_document(document: dict[str, Any] | None) -> Profile:
    document = document or {}
    birthday = document.get("birthday")
    return Profile(
        name=document.get("name"),
        phone=document.get("phone"),
        email=document.get("email"),
        birthday=date.fromisoformat(birthday) if birthday else None,
        gender=document.get("gender"),
        city=document.get("city"),
        source=document.get("source"),
    )


def lookup_keys(profile: Profile) -> dict[str, str | None]:
    """What `GET /customers?q=` and duplicate detection search by."""
    return {
        "phone": normalise_phone(profile.phone) if profile.phone else None,
        "email": normalise_email(profile.email) if profile.email else None,
    }


def lookup_key_for_query(q: str) -> tuple[str, str]:
    """(field, value) to search for a phone number or an email address typed by an agent."""
    if "@" in q:
        return "lookup.email", normalise_email(q)
    return "lookup.phone", normalise_phone(q)

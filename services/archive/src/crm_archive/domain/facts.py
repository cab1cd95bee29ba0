"""The facts a customer's record is made of: who the customer is, their orders, their answers."""

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

CENT = Decimal("0.01")


def normalise_phone(phone: str) -> str:
    """The digits of a phone number, the last 11 of a longer one (a country code dropped): two
    spellings of one number are the same contact."""
    digits = re.sub(r"\D", "", phone)
    return digits[-11:] if len(digits) > 11 else digits


def normalise_email(email: str) -> str:
    return email.strip().lower()


@dataclass
class Profile:
    """Who the customer is. Personal data, read and written in one place (the repository),
    except `type` and `source`."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    gender: str | None = None
    city: str | None = None
    source: str | None = None
    type: str = "person"
    """"person" or "company": plain, kept after an erasure."""
    address: str | None = None
    company: str | None = None
    job_title: str | None = None


@dataclass
class Order:
    order_id: str
    placed_at: datetime | None = None
    """None while only a refund or cancellation of it was seen (out-of-order delivery)."""
    amount: Decimal = Decimal(0)
    currency: str | None = None
    refunded: Decimal = Decimal(0)
    cancelled: bool = False

    @property
    def active(self) -> bool:
        return self.placed_at is not None and not self.cancelled

    @property
    def net(self) -> Decimal:
        """Amount minus refunds, never below zero."""
        return max(Decimal(0), self.amount - self.refunded)


@dataclass(frozen=True)
class Survey:
    at: datetime
    csat: int | None
    nps: int | None


def contacts_of(profile: Profile) -> set[str]:
    """The phone and the e-mail, normalised: what two customers share when they are likely
    one person (duplicate detection)."""
    found = set()
    if profile.phone:
        found.add("phone:" + normalise_phone(profile.phone))
    if profile.email:
        found.add("email:" + normalise_email(profile.email))
    return found


@dataclass(frozen=True)
class Agreement:
    """A signed agreement (协议) of the customer, as `relations.v1` announced it: its number and
    its days (in the rules' time zone). Active from `starts_on` to `ends_on`, both included."""

    number: str
    starts_on: date
    ends_on: date

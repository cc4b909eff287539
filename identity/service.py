"""Rules of the identity domain: enrolment, lookup and erasure of owners."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from common.clock import Clock
from identity.errors import AccountErased, AccountNotFound, InvalidPersonalId
from identity.models import Account, AccountKind, AccountStatus, Citizen
from identity.repository import AccountRepository

_PIN = re.compile(r"^\d{12}$")
# Century-and-sex digit: even = male, odd = female; the pair gives the century.
_CENTURY = {
    0: 1900,
    1: 1900,
    2: 2000,
    3: 2000,
    4: 2100,
    5: 2100,
    6: 2200,
    7: 2200,
    8: 1800,
    9: 1800,
}


def validate_personal_id(pin: str, birth_date: dt.date | None = None) -> None:
    """Check a 12-digit personal identification number (số định danh cá nhân).

    Digits 1-3: province of birth registration (001..096), digit 4: century and sex, digits
    5-6: the last two digits of the birth year. When ``birth_date`` is known they must agree.
    """
    if not _PIN.match(pin):
        raise InvalidPersonalId(
            "Số định danh cá nhân phải gồm đúng 12 chữ số.",
            "The personal identification number must be exactly 12 digits.",
        )
    province = int(pin[:3])
    if not 1 <= province <= 96:
        raise InvalidPersonalId("Mã tỉnh không hợp lệ.", "Unknown province code.")
    if birth_date is not None:
        century = _CENTURY[int(pin[3])]
        year = century + int(pin[4:6])
        if year != birth_date.year:
            raise InvalidPersonalId(
                "Năm sinh không khớp với số định danh cá nhân.",
                "The birth year does not match the personal identification number.",
            )


@dataclass(frozen=True)
class CitizenProfile:
    national_subject: str
    personal_id: str
    full_name: str
    birth_date: dt.date | None
    eid_level: int


class IdentityService:
    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.repo = AccountRepository(session)
        self.clock = clock

    def enrol_citizen(self, profile: CitizenProfile) -> Account:
        """First login enrols; later ones refresh name and level. Keyed by national subject."""
        validate_personal_id(profile.personal_id, profile.birth_date)
        existing = self.repo.citizen_by_subject(profile.national_subject)
        if existing is not None:
            account = self.repo.get(existing.account_id)
            assert account is not None
            if account.status is AccountStatus.erased:
                raise AccountErased()
            existing.full_name = profile.full_name
            existing.eid_level = profile.eid_level
            existing.birth_date = profile.birth_date
            return account
        account = Account(
            id=uuid.uuid4(),
            kind=AccountKind.citizen,
            status=AccountStatus.active,
            created_at=self.clock.now(),
        )
        self.repo.add(account)
        self.session.flush()
        self.repo.add(
            Citizen(
                account_id=account.id,
                national_subject=profile.national_subject,
                personal_id=profile.personal_id,
                full_name=profile.full_name,
                birth_date=profile.birth_date,
                eid_level=profile.eid_level,
            )
        )
        self.session.flush()
        return account

    def active_account(self, account_id: uuid.UUID) -> Account:
        account = self.repo.get(account_id)
        if account is None:
            raise AccountNotFound()
        if account.status == AccountStatus.erased:
            raise AccountErased()
        return account

    def citizen(self, account_id: uuid.UUID) -> Citizen | None:
        return self.repo.citizen(account_id)

    def mark_erased(self, account_id: uuid.UUID) -> None:
        """Forget the person: the account row stays as a tombstone without personal data."""
        account = self.active_account(account_id)
        account.status = AccountStatus.erased
        account.erased_at = self.clock.now()
        citizen = self.repo.citizen(account_id)
        if citizen is not None:
            self.session.delete(citizen)
        self.session.flush()

"""Queries of the identity domain."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.models import Account, Citizen


class AccountRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, account_id: uuid.UUID) -> Account | None:
        return self.session.get(Account, account_id)

    def citizen(self, account_id: uuid.UUID) -> Citizen | None:
        return self.session.get(Citizen, account_id)

    def citizen_by_subject(self, subject: str) -> Citizen | None:
        return self.session.scalars(
            select(Citizen).where(Citizen.national_subject == subject)
        ).first()

    def citizen_by_personal_id(self, personal_id: str) -> Citizen | None:
        return self.session.scalars(
            select(Citizen).where(Citizen.personal_id == personal_id)
        ).first()

    def add(self, row: Account | Citizen) -> None:
        self.session.add(row)

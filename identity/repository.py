"""Queries of the identity domain.

Reads of an owner's delegations are scoped to that owner in the query itself; a lookup that is
not says so in its name (``..._unscoped``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.errors import KhoError
from identity.models import (
    Account,
    Agency,
    AgencyLevel,
    Citizen,
    Delegation,
    Official,
    Organisation,
    Representative,
)

Row = Account | Citizen | Organisation | Representative | Agency | Official | Delegation


class _Repository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: Row) -> None:
        self.session.add(row)

    def add_unique(self, row: Row, conflict: KhoError) -> None:
        """Insert ``row`` in a savepoint; a unique violation raises ``conflict``, not a 500.

        Services look first, for a precise answer; this catches the race between two requests
        that both passed that look.
        """
        try:
            with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            raise conflict from None


class AccountRepository(_Repository):
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


class OrganisationRepository(_Repository):
    def organisation(self, account_id: uuid.UUID) -> Organisation | None:
        return self.session.get(Organisation, account_id)

    def organisation_by_tax_code(self, tax_code: str) -> Organisation | None:
        return self.session.scalars(
            select(Organisation).where(Organisation.tax_code == tax_code)
        ).first()

    def representatives(self, organisation_id: uuid.UUID) -> Sequence[Representative]:
        return self.session.scalars(
            select(Representative)
            .where(Representative.organisation_id == organisation_id)
            .order_by(Representative.created_at, Representative.id)
        ).all()

    def representative(
        self, organisation_id: uuid.UUID, representative_id: uuid.UUID
    ) -> Representative | None:
        return self.session.scalars(
            select(Representative).where(
                Representative.id == representative_id,
                Representative.organisation_id == organisation_id,
            )
        ).first()

    def unrevoked_representative(
        self, organisation_id: uuid.UUID, citizen_account_id: uuid.UUID
    ) -> Representative | None:
        return self.session.scalars(
            select(Representative).where(
                Representative.organisation_id == organisation_id,
                Representative.citizen_account_id == citizen_account_id,
                Representative.revoked_at.is_(None),
            )
        ).first()

    def unrevoked_representations_of(
        self, citizen_account_id: uuid.UUID
    ) -> Sequence[Representative]:
        return self.session.scalars(
            select(Representative).where(
                Representative.citizen_account_id == citizen_account_id,
                Representative.revoked_at.is_(None),
            )
        ).all()


class AgencyRepository(_Repository):
    def get(self, agency_id: uuid.UUID) -> Agency | None:
        return self.session.get(Agency, agency_id)

    def by_code(self, code: str) -> Agency | None:
        return self.session.scalars(select(Agency).where(Agency.code == code)).first()

    def list_agencies(
        self,
        *,
        level: AgencyLevel | None = None,
        parent_id: uuid.UUID | None = None,
        active: bool | None = None,
    ) -> Sequence[Agency]:
        query = select(Agency)
        if level is not None:
            query = query.where(Agency.level == level)
        if parent_id is not None:
            query = query.where(Agency.parent_id == parent_id)
        if active is not None:
            query = query.where(Agency.active.is_(active))
        return self.session.scalars(query.order_by(Agency.code)).all()

    def official(self, agency_id: uuid.UUID, official_id: uuid.UUID) -> Official | None:
        return self.session.scalars(
            select(Official).where(Official.id == official_id, Official.agency_id == agency_id)
        ).first()

    def official_by_personal_id(self, agency_id: uuid.UUID, personal_id: str) -> Official | None:
        return self.session.scalars(
            select(Official).where(
                Official.agency_id == agency_id, Official.personal_id == personal_id
            )
        ).first()

    def officials(self, agency_id: uuid.UUID, *, active: bool | None = None) -> Sequence[Official]:
        query = select(Official).where(Official.agency_id == agency_id)
        if active is not None:
            query = query.where(Official.active.is_(active))
        return self.session.scalars(query.order_by(Official.full_name, Official.id)).all()

    def officials_of_account(self, account_id: uuid.UUID) -> Sequence[Official]:
        """The active official posts of a signed-in person, in active agencies."""
        return self.session.scalars(
            select(Official)
            .join(Agency, Agency.id == Official.agency_id)
            .where(
                Official.citizen_account_id == account_id,
                Official.active.is_(True),
                Agency.active.is_(True),
            )
            .order_by(Official.created_at)
        ).all()

    def unlinked_officials_unscoped(self, personal_id: str) -> Sequence[Official]:
        """Officials of any agency registered under ``personal_id`` but not yet signed in."""
        return self.session.scalars(
            select(Official).where(
                Official.personal_id == personal_id, Official.citizen_account_id.is_(None)
            )
        ).all()


class DelegationRepository(_Repository):
    def for_party(self, account_id: uuid.UUID, delegation_id: uuid.UUID) -> Delegation | None:
        """A delegation the account gave or received; anyone else's is invisible."""
        return self.session.scalars(
            select(Delegation).where(
                Delegation.id == delegation_id,
                or_(Delegation.owner_id == account_id, Delegation.delegate_id == account_id),
            )
        ).first()

    def given(self, owner_id: uuid.UUID) -> Sequence[Delegation]:
        return self.session.scalars(
            select(Delegation)
            .where(Delegation.owner_id == owner_id)
            .order_by(Delegation.created_at, Delegation.id)
        ).all()

    def received(self, delegate_id: uuid.UUID) -> Sequence[Delegation]:
        return self.session.scalars(
            select(Delegation)
            .where(Delegation.delegate_id == delegate_id)
            .order_by(Delegation.created_at, Delegation.id)
        ).all()

    def unrevoked_involving(self, account_id: uuid.UUID) -> Sequence[Delegation]:
        return self.session.scalars(
            select(Delegation).where(
                or_(Delegation.owner_id == account_id, Delegation.delegate_id == account_id),
                Delegation.revoked_at.is_(None),
            )
        ).all()

    def candidates(
        self, owner_id: uuid.UUID, delegate_id: uuid.UUID, at: dt.datetime
    ) -> Sequence[Delegation]:
        """Delegations between the two that were started, not ended and not revoked at ``at``.

        Scope and a guardian's 18th-birthday limit are checked by the service.
        """
        return self.session.scalars(
            select(Delegation)
            .where(
                Delegation.owner_id == owner_id,
                Delegation.delegate_id == delegate_id,
                Delegation.valid_from <= at,
                or_(Delegation.valid_until.is_(None), Delegation.valid_until > at),
                or_(Delegation.revoked_at.is_(None), Delegation.revoked_at > at),
            )
            .order_by(Delegation.created_at, Delegation.id)
        ).all()

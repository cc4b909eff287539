"""Every query of the consent domain; reads of an owner's data are scoped to that owner."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from consent.errors import NotificationNotFound
from consent.models import (
    AccessMode,
    ConsentRequest,
    ConsentRequestItem,
    Grant,
    GrantItem,
    Notification,
    RequestStatus,
    StatutoryAccess,
)


class GrantUse(NamedTuple):
    """What one counted use of a grant returns: whose papers, how, and the pinned version and
    hash of the document asked for (both None when the grant does not cover it)."""

    subject_id: uuid.UUID
    access_mode: AccessMode
    version: int | None
    sha256: str | None


class ConsentRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, row: ConsentRequest | ConsentRequestItem | Grant | GrantItem) -> None:
        self.session.add(row)

    # requests

    def request_for_owner(
        self, owner_id: uuid.UUID, request_id: uuid.UUID, *, for_update: bool = False
    ) -> ConsentRequest | None:
        query = select(ConsentRequest).where(
            ConsentRequest.id == request_id, ConsentRequest.subject_id == owner_id
        )
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def request_for_agency(
        self, agency_id: uuid.UUID, request_id: uuid.UUID
    ) -> ConsentRequest | None:
        return self.session.scalars(
            select(ConsentRequest).where(
                ConsentRequest.id == request_id, ConsentRequest.agency_id == agency_id
            )
        ).first()

    def request_owner_unscoped(self, request_id: uuid.UUID) -> uuid.UUID | None:
        """Whose request this is, for logging a refused read; never returned to a caller."""
        owner: uuid.UUID | None = self.session.scalar(
            select(ConsentRequest.subject_id).where(ConsentRequest.id == request_id)
        )
        return owner

    def requests_of_owner(
        self, owner_id: uuid.UUID, status: RequestStatus | None, limit: int
    ) -> Sequence[ConsentRequest]:
        query = select(ConsentRequest).where(ConsentRequest.subject_id == owner_id)
        if status is not None:
            query = query.where(ConsentRequest.status == status)
        return self.session.scalars(
            query.order_by(ConsentRequest.created_at.desc()).limit(limit)
        ).all()

    def items(self, request_id: uuid.UUID) -> Sequence[ConsentRequestItem]:
        return self.session.scalars(
            select(ConsentRequestItem)
            .where(ConsentRequestItem.request_id == request_id)
            .order_by(ConsentRequestItem.id)
        ).all()

    def lapse_due(self, owner_id: uuid.UUID, now: dt.datetime) -> None:
        self.session.execute(
            update(ConsentRequest)
            .where(
                ConsentRequest.subject_id == owner_id,
                ConsentRequest.status == RequestStatus.pending,
                ConsentRequest.lapses_at <= now,
            )
            .values(status=RequestStatus.lapsed)
        )

    # grants

    def grant_for_request(self, request_id: uuid.UUID) -> Grant | None:
        return self.session.scalars(select(Grant).where(Grant.request_id == request_id)).first()

    def grant_for_owner(
        self, owner_id: uuid.UUID, grant_id: uuid.UUID, *, for_update: bool = False
    ) -> Grant | None:
        query = select(Grant).where(Grant.id == grant_id, Grant.subject_id == owner_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def grant_for_agency(self, agency_id: uuid.UUID, grant_id: uuid.UUID) -> Grant | None:
        return self.session.scalars(
            select(Grant).where(Grant.id == grant_id, Grant.agency_id == agency_id)
        ).first()

    def grant_unscoped(self, grant_id: uuid.UUID) -> Grant | None:
        """For logging a refusal against the right owner; never returned to a caller."""
        return self.session.get(Grant, grant_id)

    def grant_items(self, grant_id: uuid.UUID) -> Sequence[GrantItem]:
        return self.session.scalars(
            select(GrantItem).where(GrantItem.grant_id == grant_id).order_by(GrantItem.id)
        ).all()

    def grant_item(self, grant_id: uuid.UUID, document_id: uuid.UUID) -> GrantItem | None:
        return self.session.scalars(
            select(GrantItem).where(
                GrantItem.grant_id == grant_id, GrantItem.document_id == document_id
            )
        ).first()

    def use_grant(
        self, grant_id: uuid.UUID, agency_id: uuid.UUID, document_id: uuid.UUID, now: dt.datetime
    ) -> GrantUse | None:
        """Check and count one use in a single statement: no check-then-act race.

        The row is locked by the UPDATE until the transaction ends, so a concurrent revocation
        either commits first (and this matches nothing) or waits for this use to commit.
        The same statement returns the pinned version and hash of ``document_id`` (subqueries
        of RETURNING; None when the grant does not cover it, and the caller then rolls the
        counted use back with its refusal).
        """
        item = GrantItem.grant_id == grant_id, GrantItem.document_id == document_id
        result = self.session.execute(
            update(Grant)
            .where(
                Grant.id == grant_id,
                Grant.agency_id == agency_id,
                Grant.revoked_at.is_(None),
                Grant.valid_from <= now,
                Grant.valid_until > now,
                Grant.uses < Grant.max_uses,
            )
            .values(uses=Grant.uses + 1)
            .returning(
                Grant.subject_id,
                Grant.access_mode,
                select(GrantItem.version).where(*item).scalar_subquery(),
                select(GrantItem.sha256).where(*item).scalar_subquery(),
            )
            .execution_options(synchronize_session=False)
        ).first()
        if result is None:
            return None
        return GrantUse(result[0], AccessMode(result[1]), result[2], result[3])

    def use_item_once(self, grant_id: uuid.UUID, document_id: uuid.UUID, limit: int) -> bool:
        result = self.session.execute(
            update(GrantItem)
            .where(
                GrantItem.grant_id == grant_id,
                GrantItem.document_id == document_id,
                GrantItem.uses < limit,
            )
            .values(uses=GrantItem.uses + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    def revoke(self, grant_id: uuid.UUID, owner_id: uuid.UUID, now: dt.datetime) -> bool:
        result = self.session.execute(
            update(Grant)
            .where(Grant.id == grant_id, Grant.subject_id == owner_id, Grant.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))


SUBJECT_MAX = 500


class NotificationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(
        self,
        owner_id: uuid.UUID,
        kind: str,
        subject_vi: str,
        subject_en: str,
        data: dict[str, str],
        *,
        now: dt.datetime,
        visible_from: dt.datetime | None = None,
    ) -> None:
        """A notification for the owner (subjects cut to their column), shown from
        ``visible_from`` (a deferred disclosure) or at once."""
        self.session.add(
            Notification(
                owner_id=owner_id,
                kind=kind,
                subject_vi=subject_vi[:SUBJECT_MAX],
                subject_en=subject_en[:SUBJECT_MAX],
                data=data,
                visible_from=max(visible_from or now, now),
                created_at=now,
            )
        )

    def visible(
        self, owner_id: uuid.UUID, now: dt.datetime, limit: int = 200
    ) -> Sequence[Notification]:
        return self.session.scalars(
            select(Notification)
            .where(Notification.owner_id == owner_id, Notification.visible_from <= now)
            .order_by(Notification.visible_from.desc())
            .limit(limit)
        ).all()

    def mark_read(self, owner_id: uuid.UUID, notification_id: uuid.UUID, now: dt.datetime) -> None:
        """Mark one of the owner's notifications read (again: no change). Someone else's, or one
        not shown yet (a deferred disclosure), is not found, as every other owner resource is."""
        shown = self.session.execute(
            select(Notification.read_at).where(
                Notification.id == notification_id,
                Notification.owner_id == owner_id,
                Notification.visible_from <= now,
            )
        ).first()
        if shown is None:
            raise NotificationNotFound()
        if shown.read_at is None:
            self.session.execute(
                update(Notification)
                .where(Notification.id == notification_id, Notification.owner_id == owner_id)
                .values(read_at=now)
            )


def undisclosed_statutory_accesses(
    session: Session, owner_id: uuid.UUID, now: dt.datetime
) -> dict[uuid.UUID, dt.datetime]:
    """Statutory accesses to the owner whose disclosure date has not come: id -> date."""
    rows = session.execute(
        select(StatutoryAccess.id, StatutoryAccess.disclose_at).where(
            StatutoryAccess.subject_id == owner_id,
            StatutoryAccess.disclose_at.is_not(None),
            StatutoryAccess.disclose_at > now,
        )
    ).all()
    return {row[0]: row[1] for row in rows if row[1] is not None}

"""Rules of the identity domain: enrolment, lookup and erasure of owners; organisations and their
representatives; agencies and their officials; delegations and guardianship.

Services never commit: the request's unit of work does. Time comes from the injected clock.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from common.clock import Clock
from identity.errors import (
    AccountErased,
    AccountNotFound,
    AgencyCodeTaken,
    AgencyNotFound,
    CitizenNotFound,
    DelegationNotFound,
    InvalidAgencyParent,
    InvalidDelegation,
    InvalidPersonalId,
    InvalidRepresentative,
    InvalidTaxCode,
    OfficialExists,
    OfficialNotFound,
    OrganisationNotFound,
    RepresentativeExists,
    RepresentativeNotFound,
    TaxCodeTaken,
)
from identity.models import (
    Account,
    AccountKind,
    AccountStatus,
    Agency,
    AgencyLevel,
    Citizen,
    Delegation,
    DelegationKind,
    DelegationScope,
    DelegationStatus,
    Official,
    OfficialRole,
    Organisation,
    Representative,
    RepresentativeRole,
)
from identity.repository import (
    AccountRepository,
    AgencyRepository,
    DelegationRepository,
    OrganisationRepository,
)
from identity.schemas import (
    AgencyCreate,
    AgencyOut,
    AgencyUpdate,
    DelegationOut,
    OfficialCreate,
    OfficialOut,
    OfficialUpdate,
    OrganisationOut,
    RepresentativeOut,
)

# -- dates -------------------------------------------------------------------------------------

# Ages and "on the day" rules follow the calendar in Vietnam (UTC+7, no daylight saving), not
# UTC: a child born on 1 March comes of age at midnight in Thái Nguyên, 17:00 UTC the day before.
VIETNAM_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")
AGE_OF_MAJORITY = 18
MAX_DELEGATION_YEARS = 5


def vietnam_date(at: dt.datetime) -> dt.date:
    return at.astimezone(VIETNAM_TZ).date()


def add_years(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` later; 29 February becomes the last day of February.

    Civil Code 2015, Art. 148: a period counted in years ends on the corresponding day, or on the
    last day of the month when that month has no such day.
    """
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def age_on(birth_date: dt.date, day: dt.date) -> int:
    years = day.year - birth_date.year
    return years if day >= add_years(birth_date, years) else years - 1


def coming_of_age(birth_date: dt.date) -> dt.datetime:
    """The instant (UTC) a person born on ``birth_date`` turns 18: midnight in Vietnam."""
    day = add_years(birth_date, AGE_OF_MAJORITY)
    return dt.datetime.combine(day, dt.time(), VIETNAM_TZ).astimezone(dt.UTC)


# -- personal identification numbers -----------------------------------------------------------

# ASCII digits only: ``\d`` would also accept other scripts' digits (and ``$`` a final newline).
_PIN = re.compile(r"[0-9]{12}")
# Century-and-sex digit (Circular 07/2016/TT-BCA, Art. 7): even = male, odd = female; the pair
# gives the century, 0/1 for 1900-1999 up to 8/9 for 2300-2399.
_CENTURY = {
    0: 1900,
    1: 1900,
    2: 2000,
    3: 2000,
    4: 2100,
    5: 2100,
    6: 2200,
    7: 2200,
    8: 2300,
    9: 2300,
}


def validate_personal_id(pin: str, birth_date: dt.date | None = None) -> None:
    """Check a 12-digit personal identification number (số định danh cá nhân).

    Digits 1-3: province of birth registration (001..096), digit 4: century and sex, digits
    5-6: the last two digits of the birth year. When ``birth_date`` is known they must agree.
    """
    if not _PIN.fullmatch(pin):
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


# -- tax codes ---------------------------------------------------------------------------------

_TAX_CODE = re.compile(r"([0-9]{10})(?:-?([0-9]{3}))?")
_TAX_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


def tax_code_check_digit(first_nine: str) -> int | None:
    """The 10th digit of an enterprise code, or None when the rule gives 10 (never issued)."""
    total = sum(weight * int(digit) for weight, digit in zip(_TAX_WEIGHTS, first_nine, strict=True))
    check = 10 - total % 11
    return None if check == 10 else check


def validate_tax_code(code: str) -> str:
    """Check a tax code (mã số thuế / mã số doanh nghiệp) and return it normalised.

    Ten digits: a 2-digit province, a 7-digit sequence (never 0000000) and a check digit
    ``10 - (31·N1 + 29·N2 + 23·N3 + 19·N4 + 17·N5 + 13·N6 + 7·N7 + 5·N8 + 3·N9) mod 11``. A
    dependent unit (branch) adds a 3-digit suffix 001..999, usually written after a dash. The
    normalised form is the 10 or 13 digits alone.
    """
    match = _TAX_CODE.fullmatch(code.strip())
    if match is None:
        raise InvalidTaxCode(
            "Mã số thuế gồm 10 chữ số, hoặc 10 chữ số, dấu '-' và 3 chữ số của đơn vị phụ thuộc.",
            "A tax code is 10 digits, or 10 digits, a '-' and the 3 digits of a branch.",
        )
    main, branch = match.group(1), match.group(2)
    if main[2:9] == "0000000":
        raise InvalidTaxCode("Số thứ tự của mã số thuế không hợp lệ.", "Invalid sequence number.")
    if tax_code_check_digit(main[:9]) != int(main[9]):
        raise InvalidTaxCode(
            "Chữ số kiểm tra của mã số thuế không đúng; vui lòng kiểm tra lại.",
            "The check digit of the tax code is wrong; please check the code.",
        )
    if branch == "000":
        raise InvalidTaxCode(
            "Mã đơn vị phụ thuộc phải từ 001 đến 999.", "A branch suffix runs from 001 to 999."
        )
    return main + (branch or "")


# -- citizens ----------------------------------------------------------------------------------


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
        self.agencies = AgencyRepository(session)
        self.delegations = DelegationRepository(session)
        self.organisations = OrganisationRepository(session)
        self.clock = clock

    def enrol_citizen(self, profile: CitizenProfile) -> Account:
        """First login enrols; later ones refresh name and level. Keyed by national subject."""
        validate_personal_id(profile.personal_id, profile.birth_date)
        existing = self.repo.citizen_by_subject(profile.national_subject)
        if existing is None:
            # The same person reached through another trusted route (Kho's own provider, or
            # Keycloak brokering the same e-ID) arrives with another subject; the personal
            # identification number is unique nationally, so it identifies them.
            existing = self.repo.citizen_by_personal_id(profile.personal_id)
            if existing is not None:
                existing.national_subject = profile.national_subject
        if existing is not None:
            account = self.repo.get(existing.account_id)
            assert account is not None
            if account.status == AccountStatus.erased:
                raise AccountErased()
            existing.full_name = profile.full_name
            existing.eid_level = profile.eid_level
            existing.birth_date = profile.birth_date
            self._link_official_records(account.id, existing.personal_id)
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
        self._link_official_records(account.id, profile.personal_id)
        return account

    def _link_official_records(self, account_id: uuid.UUID, personal_id: str) -> None:
        # Officials may be registered before they ever sign in; the e-ID's personal ID ties them.
        for official in self.agencies.unlinked_officials_unscoped(personal_id):
            official.citizen_account_id = account_id

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
        """Forget the person: the account row stays as a tombstone without personal data.

        Whatever let someone act for or through the account ends with it.
        """
        account = self.active_account(account_id)
        now = self.clock.now()
        account.status = AccountStatus.erased
        account.erased_at = now
        for delegation in self.delegations.unrevoked_involving(account_id):
            delegation.revoked_at = now
        for representative in self.organisations.unrevoked_representations_of(account_id):
            representative.revoked_at = now
        citizen = self.repo.citizen(account_id)
        if citizen is not None:
            self.session.delete(citizen)
        self.session.flush()


def _resolve_citizen(repo: AccountRepository, personal_id: str) -> Citizen:
    validate_personal_id(personal_id)
    citizen = repo.citizen_by_personal_id(personal_id)
    if citizen is None:
        raise CitizenNotFound()
    return citizen


# -- organisations and representatives ---------------------------------------------------------


class OrganisationService:
    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.accounts = AccountRepository(session)
        self.repo = OrganisationRepository(session)
        self.clock = clock

    def enrol(
        self, tax_code: str, name: str, legal_representative_personal_id: str
    ) -> Organisation:
        """Enrol an organisation with its legal representative, an already enrolled citizen."""
        normalised = validate_tax_code(tax_code)
        citizen = _resolve_citizen(self.accounts, legal_representative_personal_id)
        if self.repo.organisation_by_tax_code(normalised) is not None:
            raise TaxCodeTaken()
        now = self.clock.now()
        account = Account(
            id=uuid.uuid4(),
            kind=AccountKind.organisation,
            status=AccountStatus.active,
            created_at=now,
        )
        self.accounts.add(account)
        self.session.flush()
        organisation = Organisation(
            account_id=account.id, tax_code=normalised, name=name, created_at=now
        )
        self.repo.add_unique(organisation, TaxCodeTaken())
        self.repo.add(
            Representative(
                id=uuid.uuid4(),
                organisation_id=account.id,
                citizen_account_id=citizen.account_id,
                role=RepresentativeRole.legal_representative,
                valid_from=now,
                valid_until=None,
                created_at=now,
            )
        )
        self.session.flush()
        return organisation

    def get(self, organisation_id: uuid.UUID) -> Organisation:
        organisation = self.repo.organisation(organisation_id)
        account = self.accounts.get(organisation_id)
        if organisation is None or account is None or account.status == AccountStatus.erased:
            raise OrganisationNotFound()
        return organisation

    def add_representative(
        self,
        organisation_id: uuid.UUID,
        personal_id: str,
        role: RepresentativeRole,
        valid_until: dt.datetime | None = None,
    ) -> Representative:
        self.get(organisation_id)
        citizen = _resolve_citizen(self.accounts, personal_id)
        now = self.clock.now()
        if valid_until is not None and valid_until <= now:
            raise InvalidRepresentative(
                "Thời hạn đại diện phải ở tương lai.", "valid_until must be in the future."
            )
        existing = self.repo.unrevoked_representative(organisation_id, citizen.account_id)
        if existing is not None:
            if _representative_active(existing, now):
                raise RepresentativeExists()
            # Expired without being revoked: close it so the new one can take its place.
            existing.revoked_at = now
            self.session.flush()
        representative = Representative(
            id=uuid.uuid4(),
            organisation_id=organisation_id,
            citizen_account_id=citizen.account_id,
            role=role,
            valid_from=now,
            valid_until=valid_until,
            created_at=now,
        )
        self.repo.add_unique(representative, RepresentativeExists())
        return representative

    def revoke_representative(
        self, organisation_id: uuid.UUID, representative_id: uuid.UUID
    ) -> Representative:
        self.get(organisation_id)
        representative = self.repo.representative(organisation_id, representative_id)
        if representative is None:
            raise RepresentativeNotFound()
        if representative.revoked_at is None:
            representative.revoked_at = self.clock.now()
            self.session.flush()
        return representative

    def representatives(self, organisation_id: uuid.UUID) -> list[Representative]:
        self.get(organisation_id)
        return list(self.repo.representatives(organisation_id))

    def describe(self, organisation: Organisation) -> OrganisationOut:
        return OrganisationOut(
            id=organisation.account_id,
            tax_code=organisation.tax_code,
            name=organisation.name,
            created_at=organisation.created_at,
            representatives=[
                self.describe_representative(r)
                for r in self.repo.representatives(organisation.account_id)
            ],
        )

    def describe_representative(self, representative: Representative) -> RepresentativeOut:
        citizen = self.accounts.citizen(representative.citizen_account_id)
        return RepresentativeOut(
            id=representative.id,
            organisation_id=representative.organisation_id,
            citizen_account_id=representative.citizen_account_id,
            full_name=citizen.full_name if citizen else None,
            role=representative.role,
            valid_from=representative.valid_from,
            valid_until=representative.valid_until,
            revoked_at=representative.revoked_at,
            active=_representative_active(representative, self.clock.now()),
            created_at=representative.created_at,
        )


def _representative_active(representative: Representative, at: dt.datetime) -> bool:
    return (
        representative.revoked_at is None
        and representative.valid_from <= at
        and (representative.valid_until is None or at < representative.valid_until)
    )


# -- agencies and officials --------------------------------------------------------------------

# The level each agency's parent must have (None: it has no parent).
# Since 1 July 2025 local government has two tiers (province, commune): a commune belongs to
# its province. District agencies remain only for records from before the reform.
PARENT_LEVEL: dict[AgencyLevel, tuple[AgencyLevel, ...]] = {
    AgencyLevel.province: (),
    AgencyLevel.district: (AgencyLevel.province,),
    AgencyLevel.commune: (AgencyLevel.province, AgencyLevel.district),
}


class AgencyService:
    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.repo = AgencyRepository(session)
        self.accounts = AccountRepository(session)
        self.clock = clock

    def create(self, data: AgencyCreate) -> Agency:
        self._check_parent(AgencyLevel(data.level), data.parent_id)
        if self.repo.by_code(data.code) is not None:
            raise AgencyCodeTaken(extra={"agency_code": data.code})
        agency = Agency(
            id=uuid.uuid4(),
            code=data.code,
            name_vi=data.name_vi,
            name_en=data.name_en,
            level=data.level,
            parent_id=data.parent_id,
            active=True,
            created_at=self.clock.now(),
        )
        self.repo.add_unique(agency, AgencyCodeTaken(extra={"agency_code": data.code}))
        return agency

    def get(self, agency_id: uuid.UUID) -> Agency:
        agency = self.repo.get(agency_id)
        if agency is None:
            raise AgencyNotFound()
        return agency

    def list_agencies(
        self,
        *,
        level: AgencyLevel | None = None,
        parent_id: uuid.UUID | None = None,
        active: bool | None = None,
    ) -> list[Agency]:
        return list(self.repo.list_agencies(level=level, parent_id=parent_id, active=active))

    def update(self, agency_id: uuid.UUID, data: AgencyUpdate) -> Agency:
        agency = self.get(agency_id)
        changes = data.model_fields_set
        if "parent_id" in changes and data.parent_id != agency.parent_id:
            self._check_parent(AgencyLevel(agency.level), data.parent_id)
            agency.parent_id = data.parent_id
        if "name_vi" in changes and data.name_vi is not None:
            agency.name_vi = data.name_vi
        if "name_en" in changes:
            agency.name_en = data.name_en
        if "active" in changes and data.active is not None and data.active != agency.active:
            if data.active:
                self._check_parent(AgencyLevel(agency.level), agency.parent_id)
            agency.active = data.active
        self.session.flush()
        return agency

    def deactivate(self, agency_id: uuid.UUID) -> Agency:
        agency = self.get(agency_id)
        agency.active = False
        self.session.flush()
        return agency

    def _check_parent(self, level: AgencyLevel, parent_id: uuid.UUID | None) -> None:
        allowed = PARENT_LEVEL[level]
        if not allowed:
            if parent_id is not None:
                raise InvalidAgencyParent(
                    "Cơ quan cấp tỉnh không có cơ quan cấp trên.",
                    "A province agency has no parent agency.",
                )
            return
        wanted = allowed[0]
        if parent_id is None:
            raise InvalidAgencyParent(
                f"Cơ quan cấp {_LEVEL_VI[level]} phải thuộc một cơ quan cấp {_LEVEL_VI[wanted]}.",
                f"A {level.value} agency needs a {wanted.value} agency as its parent.",
            )
        parent = self.repo.get(parent_id)
        if parent is None:
            raise InvalidAgencyParent(
                "Không tìm thấy cơ quan cấp trên.", "The parent agency does not exist."
            )
        if parent.level not in allowed:
            raise InvalidAgencyParent(
                f"Cơ quan cấp {_LEVEL_VI[level]} phải thuộc một cơ quan cấp {_LEVEL_VI[wanted]}, "
                f"không phải cấp {_LEVEL_VI[AgencyLevel(parent.level)]}.",
                f"A {level.value} agency needs a {wanted.value} agency as its parent, "
                f"not a {parent.level} agency.",
            )
        if not parent.active:
            raise InvalidAgencyParent(
                "Cơ quan cấp trên đã ngừng hoạt động.", "The parent agency is inactive."
            )

    # -- officials --------------------------------------------------------------------------

    def register_official(self, agency_id: uuid.UUID, data: OfficialCreate) -> Official:
        self.get(agency_id)
        validate_personal_id(data.personal_id)
        if self.repo.official_by_personal_id(agency_id, data.personal_id) is not None:
            raise OfficialExists()
        citizen = self.accounts.citizen_by_personal_id(data.personal_id)
        official = Official(
            id=uuid.uuid4(),
            agency_id=agency_id,
            citizen_account_id=citizen.account_id if citizen else None,
            personal_id=data.personal_id,
            full_name=data.full_name,
            roles=data.roles,
            active=True,
            created_at=self.clock.now(),
        )
        self.repo.add_unique(official, OfficialExists())
        return official

    def official(self, agency_id: uuid.UUID, official_id: uuid.UUID) -> Official:
        self.get(agency_id)
        official = self.repo.official(agency_id, official_id)
        if official is None:
            raise OfficialNotFound()
        return official

    def officials(self, agency_id: uuid.UUID, *, active: bool | None = None) -> list[Official]:
        self.get(agency_id)
        return list(self.repo.officials(agency_id, active=active))

    def update_official(
        self, agency_id: uuid.UUID, official_id: uuid.UUID, data: OfficialUpdate
    ) -> Official:
        official = self.official(agency_id, official_id)
        if data.full_name is not None:
            official.full_name = data.full_name
        if data.roles is not None:
            official.roles = data.roles
        if data.active is not None:
            official.active = data.active
        self.session.flush()
        return official

    def deactivate_official(self, agency_id: uuid.UUID, official_id: uuid.UUID) -> Official:
        official = self.official(agency_id, official_id)
        official.active = False
        self.session.flush()
        return official


_LEVEL_VI = {AgencyLevel.province: "tỉnh", AgencyLevel.district: "huyện", AgencyLevel.commune: "xã"}


def agency_out(agency: Agency) -> AgencyOut:
    return AgencyOut(
        id=agency.id,
        code=agency.code,
        name_vi=agency.name_vi,
        name_en=agency.name_en,
        level=agency.level,
        parent_id=agency.parent_id,
        active=agency.active,
        created_at=agency.created_at,
    )


def official_out(official: Official) -> OfficialOut:
    return OfficialOut(
        id=official.id,
        agency_id=official.agency_id,
        citizen_account_id=official.citizen_account_id,
        personal_id=official.personal_id,
        full_name=official.full_name,
        roles=_ordered(official.roles, OfficialRole),
        active=official.active,
        created_at=official.created_at,
    )


_T = TypeVar("_T")


def _ordered(values: Iterable[_T], order: Iterable[_T]) -> list[_T]:
    wanted = set(values)
    return [member for member in order if member in wanted]


# -- delegations -------------------------------------------------------------------------------


class DelegationService:
    """Delegations an owner gives, and guardianship of minors.

    Every read is scoped to one party: an account sees the delegations it gave and those it
    received, and anyone else's is "not found".
    """

    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.repo = DelegationRepository(session)
        self.accounts = AccountRepository(session)
        self.organisations = OrganisationRepository(session)
        self.clock = clock

    def create_for_personal_id(
        self,
        owner_id: uuid.UUID,
        delegate_personal_id: str,
        *,
        scope: Iterable[DelegationScope],
        kind: DelegationKind = DelegationKind.delegation,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
    ) -> Delegation:
        delegate = _resolve_citizen(self.accounts, delegate_personal_id)
        return self.create(
            owner_id,
            delegate.account_id,
            scope=scope,
            kind=kind,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    def create(
        self,
        owner_id: uuid.UUID,
        delegate_id: uuid.UUID,
        *,
        scope: Iterable[DelegationScope],
        kind: DelegationKind = DelegationKind.delegation,
        valid_from: dt.datetime | None = None,
        valid_until: dt.datetime | None = None,
    ) -> Delegation:
        now = self.clock.now()
        scopes = frozenset(DelegationScope(s) for s in scope)
        start = valid_from or now
        self._check_common(owner_id, delegate_id, scopes, start, valid_until, now)
        if kind == DelegationKind.guardian:
            self._check_guardian(owner_id, delegate_id, start)
        else:
            self._check_delegation_period(start, valid_until)
        delegation = Delegation(
            id=uuid.uuid4(),
            owner_id=owner_id,
            delegate_id=delegate_id,
            scope=scopes,
            kind=kind,
            valid_from=start,
            valid_until=valid_until,
            created_at=now,
        )
        self.repo.add(delegation)
        self.session.flush()
        return delegation

    def _check_common(
        self,
        owner_id: uuid.UUID,
        delegate_id: uuid.UUID,
        scopes: frozenset[DelegationScope],
        start: dt.datetime,
        valid_until: dt.datetime | None,
        now: dt.datetime,
    ) -> None:
        if start.tzinfo is None or (valid_until is not None and valid_until.tzinfo is None):
            raise InvalidDelegation("Thời điểm phải kèm múi giờ.", "Times need a time zone.")
        if not scopes:
            raise InvalidDelegation(
                "Cần chọn ít nhất một phạm vi uỷ quyền.", "Choose at least one scope."
            )
        if owner_id == delegate_id:
            raise InvalidDelegation(
                "Không thể tự uỷ quyền cho chính mình.", "An owner cannot delegate to themselves."
            )
        owner = self.accounts.get(owner_id)
        if owner is None or owner.status == AccountStatus.erased:
            raise AccountNotFound()
        delegate = self.accounts.get(delegate_id)
        if delegate is None:
            raise AccountNotFound()
        if delegate.status == AccountStatus.erased:
            raise InvalidDelegation(
                "Không thể uỷ quyền cho tài khoản đã bị xoá.",
                "Cannot delegate to an erased account.",
            )
        if delegate.kind != AccountKind.citizen:
            raise InvalidDelegation(
                "Người được uỷ quyền phải là công dân.", "The delegate must be a citizen."
            )
        if start < now:
            raise InvalidDelegation(
                "Thời điểm bắt đầu không được ở quá khứ.", "valid_from must not be in the past."
            )
        if valid_until is not None and valid_until <= start:
            raise InvalidDelegation(
                "Thời điểm kết thúc phải sau thời điểm bắt đầu.",
                "valid_until must be after valid_from.",
            )

    @staticmethod
    def _check_delegation_period(start: dt.datetime, valid_until: dt.datetime | None) -> None:
        if valid_until is None:
            raise InvalidDelegation(
                "Uỷ quyền phải có thời hạn kết thúc.", "A delegation needs a valid_until."
            )
        limit = dt.datetime.combine(
            add_years(start.date(), MAX_DELEGATION_YEARS), start.timetz()
        ).astimezone(dt.UTC)
        if valid_until > limit:
            raise InvalidDelegation(
                f"Thời hạn uỷ quyền tối đa {MAX_DELEGATION_YEARS} năm.",
                f"A delegation lasts at most {MAX_DELEGATION_YEARS} years.",
            )

    def _check_guardian(
        self, owner_id: uuid.UUID, delegate_id: uuid.UUID, start: dt.datetime
    ) -> None:
        day = vietnam_date(start)
        minor = self.accounts.citizen(owner_id)
        if minor is None or minor.birth_date is None:
            raise InvalidDelegation(
                "Giám hộ chỉ áp dụng cho công dân có ngày sinh đã biết.",
                "Guardianship needs an owner who is a citizen with a known birth date.",
            )
        if age_on(minor.birth_date, day) >= AGE_OF_MAJORITY:
            raise InvalidDelegation(
                "Người được giám hộ phải dưới 18 tuổi.",
                "Guardianship is only for an owner under 18.",
            )
        guardian = self.accounts.citizen(delegate_id)
        if (
            guardian is None
            or guardian.birth_date is None
            or age_on(guardian.birth_date, day) < AGE_OF_MAJORITY
        ):
            raise InvalidDelegation(
                "Người giám hộ phải là công dân đã thành niên.", "The guardian must be an adult."
            )

    def get(self, account_id: uuid.UUID, delegation_id: uuid.UUID) -> Delegation:
        delegation = self.repo.for_party(account_id, delegation_id)
        if delegation is None:
            raise DelegationNotFound()
        return delegation

    def list_for(self, account_id: uuid.UUID) -> tuple[list[Delegation], list[Delegation]]:
        """The delegations ``account_id`` gave, and those it received."""
        return list(self.repo.given(account_id)), list(self.repo.received(account_id))

    def revoke(self, account_id: uuid.UUID, delegation_id: uuid.UUID) -> Delegation:
        """End a delegation now: the owner withdraws it or the delegate gives it up.

        Revoking twice changes nothing.
        """
        delegation = self.get(account_id, delegation_id)
        if delegation.revoked_at is None:
            delegation.revoked_at = self.clock.now()
            self.session.flush()
        return delegation

    def active_delegation(
        self,
        owner_id: uuid.UUID,
        delegate_id: uuid.UUID,
        scope: DelegationScope,
        at: dt.datetime | None = None,
    ) -> Delegation | None:
        """The delegation that lets ``delegate_id`` act for ``owner_id`` within ``scope`` at
        ``at`` (now by default), or None."""
        at = at or self.clock.now()
        for account_id in (owner_id, delegate_id):
            account = self.accounts.get(account_id)
            if account is None or account.status == AccountStatus.erased:
                return None
        for delegation in self.repo.candidates(owner_id, delegate_id, at):
            if scope not in delegation.scope:
                continue
            end = self.effective_until(delegation)
            if delegation.kind == DelegationKind.guardian and (end is None or at >= end):
                continue
            return delegation
        return None

    def effective_until(self, delegation: Delegation) -> dt.datetime | None:
        """When the delegation ends by itself: valid_until, or for a guardian the minor's 18th
        birthday if earlier. For a guardian whose minor's birth date is no longer known, the
        start (it is never active)."""
        if delegation.kind != DelegationKind.guardian:
            return delegation.valid_until
        minor = self.accounts.citizen(delegation.owner_id)
        if minor is None or minor.birth_date is None:
            return delegation.valid_from
        adult = coming_of_age(minor.birth_date)
        return adult if delegation.valid_until is None else min(adult, delegation.valid_until)

    def status(self, delegation: Delegation, at: dt.datetime | None = None) -> DelegationStatus:
        at = at or self.clock.now()
        if delegation.revoked_at is not None and delegation.revoked_at <= at:
            return DelegationStatus.revoked
        end = self.effective_until(delegation)
        if end is not None and at >= end:
            return DelegationStatus.expired
        if at < delegation.valid_from:
            return DelegationStatus.pending
        return DelegationStatus.active

    def describe(self, delegation: Delegation) -> DelegationOut:
        return DelegationOut(
            id=delegation.id,
            owner_id=delegation.owner_id,
            owner_name=self._display_name(delegation.owner_id),
            delegate_id=delegation.delegate_id,
            delegate_name=self._display_name(delegation.delegate_id),
            scope=_ordered(delegation.scope, DelegationScope),
            kind=delegation.kind,
            valid_from=delegation.valid_from,
            valid_until=delegation.valid_until,
            effective_until=self.effective_until(delegation),
            status=self.status(delegation),
            created_at=delegation.created_at,
            revoked_at=delegation.revoked_at,
        )

    def _display_name(self, account_id: uuid.UUID) -> str | None:
        citizen = self.accounts.citizen(account_id)
        if citizen is not None:
            return citizen.full_name
        organisation = self.organisations.organisation(account_id)
        return organisation.name if organisation is not None else None

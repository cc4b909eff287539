"""The catalogue: document types, administrative procedures and the papers each one needs.

The catalogue is data, kept as one JSON document (``vault/catalogue_data.json`` is the starter
one shipped with Kho). :class:`CatalogueService` imports such a document, exports the current
catalogue in the same shape, applies the operators' edits, and records every change as a
:class:`~vault.models.CatalogueVersion` (what was added, changed or deactivated, and the SHA-256
of the whole catalogue afterwards). Nothing is ever deleted: documents, consent requests and
issuing rights name types and procedures, so a retired entry is deactivated.

Validation names the exact place of every problem (``procedures[3].requirements[1].
document_type``), so that an operator fixing a file of two thousand procedures finds it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from common.clock import Clock, SystemClock
from common.errors import Conflict, InvalidInput, NotFound
from vault.models import (
    Assurance,
    CatalogueVersion,
    DocumentType,
    Procedure,
    ProcedureRequirement,
)

CATALOGUE_FORMAT = "kho-catalogue/1"
STARTER_FILE = Path(__file__).with_name("catalogue_data.json")
STARTER_SOURCE = "starter"

TYPE_CODE_PATTERN = r"^[a-z][a-z0-9_]{1,63}$"
ISSUER_KIND_PATTERN = r"^[a-z][a-z_]{1,63}$"
PROCEDURE_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# The national public-service portal's procedure codes look like ``1.001193``.
OFFICIAL_PROCEDURE_CODE = re.compile(r"^\d\.\d{6}$")
# Kho's own codes, used where no national code is confirmed, look like ``KHO-TP-001``.
KHO_PROCEDURE_CODE = re.compile(r"^KHO-[A-Z]{2,10}-\d{3,6}$")

# PostgreSQL advisory-lock key serialising catalogue writers ("khcl"): two API processes starting
# at once both load the starter catalogue, and the second must see the first one's rows.
_CATALOGUE_LOCK = 0x6B68636C
_MAX_ISSUES = 50
_PATH_PART = re.compile(r"[^.\[\]]+")

Level = Literal["province", "commune"]


# -- errors ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem of a catalogue document, at a path like ``procedures[3].code``; ``kind`` is
    pydantic's error type where pydantic found it."""

    path: str
    message: str
    kind: str = "value_error"

    @property
    def location(self) -> list[str]:
        """The path as the parts of a request validation error's ``location``:
        ``["procedures", "3", "code"]``."""
        return [] if self.path == "(root)" else _PATH_PART.findall(self.path)

    def as_error(self) -> dict[str, Any]:
        """The shape of an item of a problem's ``errors``, as for an invalid request."""
        return {"location": self.location, "message": self.message, "type": self.kind}


class InvalidCatalogue(InvalidInput):
    """A catalogue document or edit is not valid; ``errors`` lists every problem by path."""

    code = "invalid_catalogue"
    title_vi = "Danh mục không hợp lệ"
    title_en = "Invalid catalogue"

    def __init__(self, issues: Sequence[Issue]) -> None:
        first = issues[0]
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        more_vi = f" (và {len(issues) - 1} lỗi khác)" if len(issues) > 1 else ""
        super().__init__(
            f"Danh mục không hợp lệ tại {first.path}: {first.message}{more_vi}",
            f"{first.path}: {first.message}{more}",
            extra={"errors": [issue.as_error() for issue in issues[:_MAX_ISSUES]]},
        )
        self.issues = list(issues)


class ProcedureNotFound(NotFound):
    code = "procedure_not_found"
    title_vi = "Không tìm thấy thủ tục trong danh mục"
    title_en = "No such procedure in the catalogue"


class DocumentTypeInUse(Conflict):
    code = "document_type_in_use"
    title_vi = "Loại giấy tờ đang được thủ tục sử dụng"
    title_en = "The document type is required by active procedures"


# -- shapes ------------------------------------------------------------------------------------


class RequirementEntry(BaseModel):
    """One paper a procedure needs."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document_type: str = Field(pattern=TYPE_CODE_PATTERN, max_length=64)
    min_assurance: Assurance = Field(
        default=Assurance.self_declared,
        description="The weakest assurance that will do: self_declared < digitised < issued",
    )
    required: bool = True
    max_age_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="The paper must have been issued (or stored, when its issue date is "
        "unknown) at most this many days ago",
    )


class DocumentTypeFields(BaseModel):
    """A document type, as an operator writes it (the code is in the URL)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_vi: str = Field(min_length=1, max_length=255)
    name_en: str = Field(min_length=1, max_length=255)
    issuer_kind: str | None = Field(default=None, pattern=ISSUER_KIND_PATTERN, max_length=64)
    expires: bool = False
    validity_months: int | None = Field(
        default=None,
        ge=1,
        le=1200,
        description="Valid for this many months from issue, for papers without a printed "
        "expiry date; needs expires=true",
    )
    official_code: bool = False
    active: bool = True


class DocumentTypeEntry(DocumentTypeFields):
    code: str = Field(pattern=TYPE_CODE_PATTERN, max_length=64)


class ProcedureFields(BaseModel):
    """A procedure, as an operator writes it (the code is in the URL)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name_vi: str = Field(min_length=1, max_length=500)
    name_en: str = Field(min_length=1, max_length=500)
    level: Level
    official_code: bool = Field(
        default=False,
        description="true only for a code of the national public-service portal (1.001193)",
    )
    active: bool = True
    requirements: list[RequirementEntry] = Field(default_factory=list, max_length=50)


class ProcedureEntry(ProcedureFields):
    code: str = Field(pattern=PROCEDURE_CODE_PATTERN, max_length=64)


class CatalogueDocument(BaseModel):
    """The whole catalogue, as in ``vault/catalogue_data.json``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    format: Literal["kho-catalogue/1"]
    version: str | None = Field(default=None, max_length=64)
    notes: list[str] = Field(default_factory=list)
    document_types: list[DocumentTypeEntry]
    procedures: list[ProcedureEntry]


class RequirementOut(RequirementEntry):
    name_vi: str
    name_en: str


class ProcedureSummary(BaseModel):
    code: str
    name_vi: str
    name_en: str
    level: str
    official_code: bool
    active: bool
    requirement_count: int


class ProcedureOut(BaseModel):
    code: str
    name_vi: str
    name_en: str
    level: str
    official_code: bool
    active: bool
    requirements: list[RequirementOut]


class CatalogueVersionOut(BaseModel):
    id: int
    created_at: dt.datetime
    source: str
    actor: str
    digest: str
    changes: dict[str, Any]


class ImportOut(BaseModel):
    changed: bool
    summary: str
    version: CatalogueVersionOut | None = None
    digest: str


# -- validation --------------------------------------------------------------------------------


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _pydantic_issues(exc: ValidationError, prefix: str = "") -> list[Issue]:
    issues = []
    for error in exc.errors():
        path = _path(error["loc"])
        if prefix:
            path = prefix if path == "(root)" else f"{prefix}.{path}"
        message = str(error["msg"]).removeprefix("Value error, ")
        issues.append(Issue(path, message, str(error["type"])))
    return issues


def _procedure_code_issue(code: str, official: bool) -> str | None:
    if official and not OFFICIAL_PROCEDURE_CODE.match(code):
        return (
            f"official_code is true but {code!r} is not a national public-service portal "
            "code (like 1.001193)"
        )
    if not official and OFFICIAL_PROCEDURE_CODE.match(code):
        return (
            f"{code!r} looks like a national portal code but official_code is false; "
            "set official_code only for a confirmed national code, else use a Kho code "
            "like KHO-TP-001"
        )
    if not official and not KHO_PROCEDURE_CODE.match(code):
        return f"{code!r} is not a Kho procedure code (like KHO-TP-001)"
    return None


def _requirement_issues(
    requirements: Sequence[RequirementEntry],
    types: Mapping[str, bool],
    prefix: str,
    *,
    active: bool,
) -> list[Issue]:
    """``types`` maps every known type code to whether it is active."""
    issues = []
    seen: set[str] = set()
    for j, requirement in enumerate(requirements):
        where = f"{prefix}[{j}].document_type"
        code = requirement.document_type
        if code in seen:
            issues.append(Issue(where, f"document type {code!r} is listed twice"))
        seen.add(code)
        if code not in types:
            issues.append(Issue(where, f"unknown document type {code!r}"))
        elif active and not types[code]:
            issues.append(Issue(where, f"document type {code!r} is inactive"))
    return issues


def _type_issues(entry: DocumentTypeFields, prefix: str) -> list[Issue]:
    if entry.validity_months is not None and not entry.expires:
        return [Issue(f"{prefix}validity_months", "validity_months needs expires=true")]
    return []


def parse_catalogue(data: object) -> CatalogueDocument:
    """Validate a catalogue document; raises :class:`InvalidCatalogue` naming every problem."""
    if not isinstance(data, Mapping):
        raise InvalidCatalogue([Issue("(root)", "the catalogue must be a JSON object")])
    try:
        document = CatalogueDocument.model_validate(data)
    except ValidationError as exc:
        raise InvalidCatalogue(_pydantic_issues(exc)) from None
    issues: list[Issue] = []
    types: dict[str, bool] = {}
    for i, entry in enumerate(document.document_types):
        if entry.code in types:
            issues.append(Issue(f"document_types[{i}].code", f"{entry.code!r} is listed twice"))
        types[entry.code] = entry.active
        issues += _type_issues(entry, f"document_types[{i}].")
    codes: set[str] = set()
    for i, procedure in enumerate(document.procedures):
        if procedure.code in codes:
            issues.append(Issue(f"procedures[{i}].code", f"{procedure.code!r} is listed twice"))
        codes.add(procedure.code)
        problem = _procedure_code_issue(procedure.code, procedure.official_code)
        if problem:
            issues.append(Issue(f"procedures[{i}].code", problem))
        issues += _requirement_issues(
            procedure.requirements,
            types,
            f"procedures[{i}].requirements",
            active=procedure.active,
        )
    if issues:
        raise InvalidCatalogue(issues)
    return document


def load_starter() -> dict[str, Any]:
    """The bundled starter catalogue, as parsed JSON."""
    loaded: dict[str, Any] = json.loads(STARTER_FILE.read_text(encoding="utf-8"))
    return loaded


# -- canonical form and diff -------------------------------------------------------------------


def _type_dump(entry: DocumentTypeEntry) -> dict[str, Any]:
    return {"code": entry.code, **entry.model_dump(mode="json", exclude={"code"})}


def _procedure_dump(entry: ProcedureEntry) -> dict[str, Any]:
    body = entry.model_dump(mode="json", exclude={"code", "requirements"})
    requirements = sorted(
        (r.model_dump(mode="json") for r in entry.requirements),
        key=lambda r: str(r["document_type"]),
    )
    return {"code": entry.code, **body, "requirements": requirements}


def catalogue_digest(
    types: Iterable[DocumentTypeEntry], procedures: Iterable[ProcedureEntry]
) -> str:
    """SHA-256 of the canonical catalogue: entries sorted by code, requirements by type, every
    field explicit, compact sorted-key UTF-8 JSON. Notes and the version label do not count."""
    canonical = {
        "document_types": sorted((_type_dump(t) for t in types), key=lambda d: str(d["code"])),
        "procedures": sorted(
            (_procedure_dump(p) for p in procedures), key=lambda d: str(d["code"])
        ),
    }
    raw = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.deactivated)

    def record(self, code: str, before: bool | None, active_before: bool, active: bool) -> None:
        """``before`` is None for a new entry, else whether anything differs."""
        if before is None:
            self.added.append(code)
        elif active_before and not active:
            self.deactivated.append(code)
        elif before:
            self.changed.append(code)

    def as_json(self) -> dict[str, list[str]]:
        return {
            "added": sorted(self.added),
            "changed": sorted(self.changed),
            "deactivated": sorted(self.deactivated),
        }

    def short(self) -> str:
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.deactivated)}"


@dataclass
class CatalogueDiff:
    document_types: Changes = field(default_factory=Changes)
    procedures: Changes = field(default_factory=Changes)

    def __bool__(self) -> bool:
        return bool(self.document_types or self.procedures)

    def summary(self) -> str:
        if not self:
            return "no changes"
        return (
            f"document types {self.document_types.short()}; "
            f"procedures {self.procedures.short()} (added ~changed -deactivated)"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "document_types": self.document_types.as_json(),
            "procedures": self.procedures.as_json(),
        }


@dataclass(frozen=True)
class ImportResult:
    """What an import did: ``version`` is None when nothing changed (no version recorded)."""

    diff: CatalogueDiff
    version: CatalogueVersion | None
    digest: str

    @property
    def changed(self) -> bool:
        return self.version is not None

    def out(self) -> ImportOut:
        return ImportOut(
            changed=self.changed,
            summary=self.diff.summary(),
            version=version_out(self.version) if self.version else None,
            digest=self.digest,
        )


def version_out(row: CatalogueVersion) -> CatalogueVersionOut:
    return CatalogueVersionOut(
        id=row.id,
        created_at=row.created_at,
        source=row.source,
        actor=row.actor,
        digest=row.digest,
        changes=row.changes,
    )


def _type_entry(row: DocumentType) -> DocumentTypeEntry:
    return DocumentTypeEntry.model_construct(
        code=row.code,
        name_vi=row.name_vi,
        name_en=row.name_en,
        issuer_kind=row.issuer_kind,
        expires=bool(row.expires),
        validity_months=row.validity_months,
        official_code=bool(row.official_code),
        active=bool(row.active),
    )


def _procedure_entry(
    row: Procedure, requirements: Sequence[ProcedureRequirement]
) -> ProcedureEntry:
    return ProcedureEntry.model_construct(
        code=row.code,
        name_vi=row.name_vi,
        name_en=row.name_en,
        level=cast(Level, row.level),
        official_code=bool(row.official_code),
        active=bool(row.active),
        requirements=[
            RequirementEntry.model_construct(
                document_type=r.document_type,
                min_assurance=Assurance(r.min_assurance),
                required=bool(r.required),
                max_age_days=r.max_age_days,
            )
            for r in sorted(requirements, key=lambda r: r.document_type)
        ],
    )


def _same_type(a: DocumentTypeEntry, b: DocumentTypeEntry) -> bool:
    return _type_dump(a) == _type_dump(b)


def _same_procedure(a: ProcedureEntry, b: ProcedureEntry) -> bool:
    return _procedure_dump(a) == _procedure_dump(b)


def _same_requirements(a: ProcedureEntry, b: ProcedureEntry) -> bool:
    return bool(_procedure_dump(a)["requirements"] == _procedure_dump(b)["requirements"])


# -- queries -----------------------------------------------------------------------------------


class CatalogueRepository:
    """Every query of the catalogue."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def lock(self) -> None:
        """Serialise catalogue writers until the transaction ends, *before* they read: two
        processes starting at once must not both find the catalogue empty."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CATALOGUE_LOCK}
            )
        else:
            # SQLite has one writer; a write that changes nothing takes its lock now, so the
            # reads that follow are current (pysqlite opens the transaction at the first write).
            self.session.execute(text("UPDATE catalogue_versions SET id = id WHERE 1 = 0"))

    def types(self) -> dict[str, DocumentType]:
        rows = self.session.scalars(select(DocumentType).order_by(DocumentType.code))
        return {row.code: row for row in rows}

    def procedures(self) -> dict[str, Procedure]:
        rows = self.session.scalars(select(Procedure).order_by(Procedure.code))
        return {row.code: row for row in rows}

    def requirements(
        self, procedure_code: str | None = None
    ) -> dict[str, list[ProcedureRequirement]]:
        query = select(ProcedureRequirement).order_by(
            ProcedureRequirement.procedure_code, ProcedureRequirement.document_type
        )
        if procedure_code is not None:
            query = query.where(ProcedureRequirement.procedure_code == procedure_code)
        grouped: dict[str, list[ProcedureRequirement]] = {}
        for row in self.session.scalars(query):
            grouped.setdefault(row.procedure_code, []).append(row)
        return grouped

    def replace_requirements(self, entries: Mapping[str, Sequence[RequirementEntry]]) -> None:
        if not entries:
            return
        codes = list(entries)
        for start in range(0, len(codes), 500):
            self.session.execute(
                delete(ProcedureRequirement).where(
                    ProcedureRequirement.procedure_code.in_(codes[start : start + 500])
                )
            )
        self.session.add_all(
            ProcedureRequirement(
                procedure_code=code,
                document_type=r.document_type,
                min_assurance=r.min_assurance,
                required=r.required,
                max_age_days=r.max_age_days,
            )
            for code, requirements in entries.items()
            for r in requirements
        )

    def types_named(self, codes: Sequence[str]) -> dict[str, DocumentType]:
        if not codes:
            return {}
        rows = self.session.scalars(select(DocumentType).where(DocumentType.code.in_(codes)))
        return {row.code: row for row in rows}

    def active_procedures_requiring(self, type_code: str) -> list[str]:
        return list(
            self.session.scalars(
                select(Procedure.code)
                .join(ProcedureRequirement, ProcedureRequirement.procedure_code == Procedure.code)
                .where(ProcedureRequirement.document_type == type_code, Procedure.active)
                .order_by(Procedure.code)
            )
        )

    def versions(self, *, limit: int, source: str | None = None) -> Sequence[CatalogueVersion]:
        query = select(CatalogueVersion)
        if source is not None:
            query = query.where(CatalogueVersion.source == source)
        return self.session.scalars(query.order_by(CatalogueVersion.id.desc()).limit(limit)).all()


# -- the service -------------------------------------------------------------------------------


def _apply_type(row: DocumentType, entry: DocumentTypeFields) -> None:
    row.name_vi = entry.name_vi
    row.name_en = entry.name_en
    row.issuer_kind = entry.issuer_kind
    row.expires = entry.expires
    row.validity_months = entry.validity_months
    row.official_code = entry.official_code
    row.active = entry.active


def _apply_procedure(row: Procedure, entry: ProcedureFields) -> None:
    row.name_vi = entry.name_vi
    row.name_en = entry.name_en
    row.level = entry.level
    row.official_code = entry.official_code
    row.active = entry.active


class CatalogueService:
    """Import, export, edit and version the catalogue. Never commits (the caller's unit of work
    does); every write holds the catalogue lock until that commit."""

    def __init__(self, session: Session, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.repo = CatalogueRepository(session)

    # -- reading ---------------------------------------------------------------------------

    def document_types(self, *, include_inactive: bool = False) -> list[DocumentTypeEntry]:
        return [
            _type_entry(row) for row in self.repo.types().values() if include_inactive or row.active
        ]

    def procedures(
        self, *, level: str | None = None, include_inactive: bool = False
    ) -> list[ProcedureSummary]:
        counts = {code: len(rows) for code, rows in self.repo.requirements().items()}
        return [
            ProcedureSummary(
                code=row.code,
                name_vi=row.name_vi,
                name_en=row.name_en,
                level=row.level,
                official_code=row.official_code,
                active=row.active,
                requirement_count=counts.get(row.code, 0),
            )
            for row in self.repo.procedures().values()
            if (include_inactive or row.active) and (level is None or row.level == level)
        ]

    def procedure(self, code: str, *, include_inactive: bool = False) -> ProcedureOut:
        row = self.session.get(Procedure, code)
        if row is None or not (row.active or include_inactive):
            raise ProcedureNotFound(extra={"procedure_code": code})
        requirements = self.repo.requirements(code).get(code, [])
        names = self.repo.types_named([r.document_type for r in requirements])
        return ProcedureOut(
            code=row.code,
            name_vi=row.name_vi,
            name_en=row.name_en,
            level=row.level,
            official_code=row.official_code,
            active=row.active,
            requirements=[
                RequirementOut(
                    document_type=r.document_type,
                    min_assurance=Assurance(r.min_assurance),
                    required=r.required,
                    max_age_days=r.max_age_days,
                    name_vi=names[r.document_type].name_vi,
                    name_en=names[r.document_type].name_en,
                )
                for r in requirements
            ],
        )

    def _state(self) -> tuple[list[DocumentTypeEntry], list[ProcedureEntry]]:
        types = [_type_entry(row) for row in self.repo.types().values()]
        requirements = self.repo.requirements()
        procedures = [
            _procedure_entry(row, requirements.get(code, []))
            for code, row in self.repo.procedures().items()
        ]
        return types, procedures

    def export_catalogue(self) -> dict[str, Any]:
        """The whole catalogue (inactive entries included) in the shape of the data file."""
        types, procedures = self._state()
        latest = self.repo.versions(limit=1)
        return {
            "format": CATALOGUE_FORMAT,
            "version": f"kho-{latest[0].id}" if latest else None,
            "notes": [
                "Exported from Kho. Document-type codes are Kho's own; procedure codes with "
                "official_code true are national public-service portal codes, KHO- codes are "
                "Kho's own."
            ],
            "document_types": [_type_dump(t) for t in types],
            "procedures": [_procedure_dump(p) for p in procedures],
        }

    def digest(self) -> str:
        """SHA-256 of the catalogue as it stands (see :func:`catalogue_digest`)."""
        return catalogue_digest(*self._state())

    def versions(self, limit: int = 100) -> list[CatalogueVersionOut]:
        return [version_out(row) for row in self.repo.versions(limit=limit)]

    # -- importing -------------------------------------------------------------------------

    def import_catalogue(
        self,
        data: object,
        *,
        source: str,
        actor: str,
        deactivate_missing: bool = True,
    ) -> ImportResult:
        """Make the catalogue what ``data`` says; returns the diff and the version recorded.

        Types and procedures are upserted and each procedure's requirements replaced. With
        ``deactivate_missing`` (the default: the document is the whole catalogue) entries the
        document leaves out are deactivated, never deleted. Importing what is already there
        records no version.
        """
        document = parse_catalogue(data)
        self.repo.lock()
        types = self.repo.types()
        procedures = self.repo.procedures()
        requirements = self.repo.requirements()
        diff = CatalogueDiff()

        in_file_types = {entry.code for entry in document.document_types}
        for entry in document.document_types:
            row = types.get(entry.code)
            if row is None:
                row = DocumentType(code=entry.code)
                _apply_type(row, entry)
                self.session.add(row)
                types[entry.code] = row
                diff.document_types.record(entry.code, None, False, entry.active)
                continue
            before = _type_entry(row)
            if not _same_type(before, entry):
                diff.document_types.record(entry.code, True, before.active, entry.active)
                _apply_type(row, entry)
        if deactivate_missing:
            for code, row in types.items():
                if code not in in_file_types and row.active:
                    row.active = False
                    diff.document_types.deactivated.append(code)
        self.session.flush()

        in_file_procedures = {p.code for p in document.procedures}
        replaced: dict[str, list[RequirementEntry]] = {}
        for wanted in document.procedures:
            proc = procedures.get(wanted.code)
            if proc is None:
                proc = Procedure(code=wanted.code)
                _apply_procedure(proc, wanted)
                self.session.add(proc)
                procedures[wanted.code] = proc
                replaced[wanted.code] = wanted.requirements
                diff.procedures.record(wanted.code, None, False, wanted.active)
                continue
            current = _procedure_entry(proc, requirements.get(wanted.code, []))
            if _same_procedure(current, wanted):
                continue
            diff.procedures.record(wanted.code, True, current.active, wanted.active)
            _apply_procedure(proc, wanted)
            if not _same_requirements(current, wanted):
                replaced[wanted.code] = wanted.requirements
        if deactivate_missing:
            for code, proc in procedures.items():
                if code not in in_file_procedures and proc.active:
                    proc.active = False
                    diff.procedures.deactivated.append(code)
        self._check_merged(document, types, procedures, requirements, in_file_procedures)
        self.session.flush()
        self.repo.replace_requirements(replaced)
        self.session.flush()

        digest = self.digest()
        if not diff:
            return ImportResult(diff, None, digest)
        file_digest = catalogue_digest(document.document_types, document.procedures)
        changes = {
            **diff.as_json(),
            "file": {"version": document.version, "digest": file_digest},
        }
        return ImportResult(diff, self._record(source, actor, changes, digest), digest)

    def _check_merged(
        self,
        document: CatalogueDocument,
        types: Mapping[str, DocumentType],
        procedures: Mapping[str, Procedure],
        requirements: Mapping[str, Sequence[ProcedureRequirement]],
        in_file: set[str],
    ) -> None:
        """An active procedure kept from before (not in the file) must not need a type the
        file deactivates: refuse, naming the type's entry in the file."""
        where = {entry.code: i for i, entry in enumerate(document.document_types)}
        issues = []
        for code, proc in procedures.items():
            if code in in_file or not proc.active:
                continue
            for r in requirements.get(code, []):
                row = types.get(r.document_type)
                if row is not None and not row.active and r.document_type in where:
                    issues.append(
                        Issue(
                            f"document_types[{where[r.document_type]}].active",
                            f"{r.document_type!r} is still required by active procedure {code!r}",
                        )
                    )
        if issues:
            raise InvalidCatalogue(issues)

    def _record(
        self, source: str, actor: str, changes: dict[str, Any], digest: str
    ) -> CatalogueVersion:
        version = CatalogueVersion(
            created_at=self.clock.now(),
            source=source[:32],
            actor=actor[:128],
            changes=changes,
            digest=digest,
        )
        self.session.add(version)
        self.session.flush()
        return version

    # -- operators' edits ------------------------------------------------------------------

    def put_document_type(
        self, code: str, fields: DocumentTypeFields, *, actor: str
    ) -> tuple[DocumentTypeEntry, bool]:
        """Create or replace one document type; returns it and whether it was created.
        A change records a catalogue version; deactivating a type that active procedures
        still need is refused."""
        issues = []
        if not re.match(TYPE_CODE_PATTERN, code):
            issues.append(Issue("code", f"{code!r} is not a document-type code (snake_case)"))
        issues += _type_issues(fields, "")
        if issues:
            raise InvalidCatalogue(issues)
        entry = DocumentTypeEntry(code=code, **fields.model_dump())
        self.repo.lock()
        row = self.session.get(DocumentType, code)
        changes = Changes()
        if row is None:
            row = DocumentType(code=code)
            _apply_type(row, entry)
            self.session.add(row)
            changes.record(code, None, False, entry.active)
        else:
            before = _type_entry(row)
            if _same_type(before, entry):
                return before, False
            if before.active and not entry.active:
                using = self.repo.active_procedures_requiring(code)
                if using:
                    raise DocumentTypeInUse(
                        f"Loại giấy tờ {code} đang được các thủ tục sau yêu cầu: "
                        f"{', '.join(using[:20])}.",
                        f"{code} is required by active procedures: {', '.join(using[:20])}.",
                        extra={"procedures": using[:100]},
                    )
            changes.record(code, True, before.active, entry.active)
            _apply_type(row, entry)
        self.session.flush()
        self._record(
            "admin", actor, {**CatalogueDiff(document_types=changes).as_json()}, self.digest()
        )
        return _type_entry(row), changes.added == [code]

    def put_procedure(
        self, code: str, fields: ProcedureFields, *, actor: str
    ) -> tuple[ProcedureOut, bool]:
        """Create or replace one procedure and its requirements; returns it and whether it
        was created. A change records a catalogue version."""
        issues = []
        problem = (
            _procedure_code_issue(code, fields.official_code)
            if re.match(PROCEDURE_CODE_PATTERN, code)
            else f"{code!r} is not a procedure code"
        )
        if problem:
            issues.append(Issue("code", problem))
        self.repo.lock()
        known = {row.code: row.active for row in self.repo.types().values()}
        issues += _requirement_issues(
            fields.requirements, known, "requirements", active=fields.active
        )
        if issues:
            raise InvalidCatalogue(issues)
        entry = ProcedureEntry(code=code, **fields.model_dump())
        row = self.session.get(Procedure, code)
        changes = Changes()
        if row is None:
            row = Procedure(code=code)
            _apply_procedure(row, entry)
            self.session.add(row)
            self.session.flush()
            self.repo.replace_requirements({code: entry.requirements})
            changes.record(code, None, False, entry.active)
        else:
            current = _procedure_entry(row, self.repo.requirements(code).get(code, []))
            if _same_procedure(current, entry):
                return self.procedure(code, include_inactive=True), False
            changes.record(code, True, current.active, entry.active)
            _apply_procedure(row, entry)
            if not _same_requirements(current, entry):
                self.repo.replace_requirements({code: entry.requirements})
        self.session.flush()
        self._record("admin", actor, CatalogueDiff(procedures=changes).as_json(), self.digest())
        return self.procedure(code, include_inactive=True), changes.added == [code]


# -- start-up ----------------------------------------------------------------------------------


def ensure_starter_catalogue(session: Session, clock: Clock | None = None) -> int:
    """Load the bundled catalogue when this database has not loaded this version of it.

    Idempotent and safe with several processes starting at once (the catalogue lock). The
    bundled file only adds and updates entries: what operators added stays active; an entry they
    edited is overwritten only when a new bundled file changes it. Returns how many entries
    were added or changed (0 when there was nothing to do).
    """
    data = load_starter()
    document = parse_catalogue(data)
    file_digest = catalogue_digest(document.document_types, document.procedures)
    service = CatalogueService(session, clock or SystemClock())
    service.repo.lock()
    latest = service.repo.versions(limit=1, source=STARTER_SOURCE)
    if latest and latest[0].changes.get("file", {}).get("digest") == file_digest:
        return 0
    result = service.import_catalogue(
        data, source=STARTER_SOURCE, actor="kho", deactivate_missing=False
    )
    diff = result.diff
    return sum(
        len(part.added) + len(part.changed) for part in (diff.document_types, diff.procedures)
    )

"""The bundled catalogue validates and is what it claims to be; validation names the exact place
of every problem; the reuse rules judge papers as documented."""

from __future__ import annotations

import copy
import datetime as dt
import unicodedata
import uuid
from typing import Any

import pytest

from vault.catalogue import (
    KHO_PROCEDURE_CODE,
    OFFICIAL_PROCEDURE_CODE,
    InvalidCatalogue,
    catalogue_digest,
    load_starter,
    parse_catalogue,
)
from vault.models import Assurance
from vault.reuse import Candidate, Requirement, RequirementStatus, add_months, assess

STARTER_TYPES = {
    "cccd",
    "birth_certificate",
    "marriage_certificate",
    "marital_status",
    "judicial_record",
    "driving_licence",
    "passport",
    "health_insurance",
    "land_use_certificate",
    "household_business",
    "diploma",
    "health_certificate",
    "residence_confirmation",
    "death_certificate",
    "other",
}
# Vietnamese letters outside ASCII (lower case; names are checked case-folded).
VIETNAMESE = set("àáạảãâầấậẩẫăằắặẳẵèéẹẻẽêềếệểễìíịỉĩòóọỏõôồốộổỗơờớợởỡùúụủũưừứựửữỳýỵỷỹđ")


def starter() -> dict[str, Any]:
    return copy.deepcopy(load_starter())


def issue_paths(data: object) -> list[str]:
    with pytest.raises(InvalidCatalogue) as caught:
        parse_catalogue(data)
    return [issue.path for issue in caught.value.issues]


def test_bundled_catalogue_validates_and_is_large_enough() -> None:
    document = parse_catalogue(load_starter())
    assert len(document.document_types) >= 25
    assert len(document.procedures) >= 15
    assert {t.code for t in document.document_types} >= STARTER_TYPES
    assert all(t.active for t in document.document_types)
    assert all(p.requirements for p in document.procedures)


def test_names_are_vietnamese_with_diacritics_in_nfc() -> None:
    document = parse_catalogue(load_starter())
    names = [t.name_vi for t in document.document_types] + [p.name_vi for p in document.procedures]
    for name in names:
        assert unicodedata.normalize("NFC", name) == name, name
        assert VIETNAMESE & set(name.lower()), f"no Vietnamese letter in {name!r}"
    assert "Đăng ký khai sinh" in {p.name_vi for p in document.procedures}


def test_codes_official_only_where_national_and_header_says_which() -> None:
    data = load_starter()
    document = parse_catalogue(data)
    official = [p.code for p in document.procedures if p.official_code]
    assert official, "some national codes are expected"
    for procedure in document.procedures:
        pattern = OFFICIAL_PROCEDURE_CODE if procedure.official_code else KHO_PROCEDURE_CODE
        assert pattern.match(procedure.code), procedure.code
    assert not any(t.official_code for t in document.document_types)
    header = " ".join(data["notes"])
    assert "KHO-" in header
    assert "official_code false" in header
    for code in official:
        assert code in header


def test_validity_where_the_law_fixes_it() -> None:
    types = {t.code: t for t in parse_catalogue(load_starter()).document_types}
    assert types["judicial_record"].validity_months == 6
    assert types["marital_status"].validity_months == 6
    assert types["health_certificate"].validity_months == 12
    assert types["cccd"].expires
    assert not types["birth_certificate"].expires


def test_digest_ignores_order_notes_and_version() -> None:
    data = starter()
    document = parse_catalogue(data)
    digest = catalogue_digest(document.document_types, document.procedures)
    shuffled = starter()
    shuffled["document_types"].reverse()
    shuffled["procedures"].reverse()
    shuffled["procedures"][0]["requirements"].reverse()
    shuffled["notes"] = ["other words"]
    shuffled["version"] = "x"
    again = parse_catalogue(shuffled)
    assert catalogue_digest(again.document_types, again.procedures) == digest
    shuffled["procedures"][0]["requirements"][0]["required"] = not shuffled["procedures"][0][
        "requirements"
    ][0]["required"]
    changed = parse_catalogue(shuffled)
    assert catalogue_digest(changed.document_types, changed.procedures) != digest


def test_unknown_requirement_type_is_named_by_path() -> None:
    data = starter()
    data["procedures"][3]["requirements"][1]["document_type"] = "no_such_paper"
    with pytest.raises(InvalidCatalogue) as caught:
        parse_catalogue(data)
    assert caught.value.issues[0].path == "procedures[3].requirements[1].document_type"
    assert "procedures[3].requirements[1].document_type" in str(caught.value)
    assert "no_such_paper" in str(caught.value)
    assert caught.value.extra["errors"][0] == {
        "location": ["procedures", "3", "requirements", "1", "document_type"],
        "message": "unknown document type 'no_such_paper'",
        "type": "value_error",
    }


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d["procedures"][2].update(surprise=1), "procedures[2].surprise"),
        (lambda d: d.update(extra="x"), "extra"),
        (
            lambda d: d["procedures"][0]["requirements"][0].update(min_assurance="notarised"),
            "procedures[0].requirements[0].min_assurance",
        ),
        (lambda d: d["document_types"][4].update(code="Bad Code"), "document_types[4].code"),
        (lambda d: d["procedures"][1].update(level="district"), "procedures[1].level"),
        (lambda d: d["procedures"][1].update(code="KHO-TP-1"), "procedures[1].code"),
        # An official-looking code is refused unless it is marked official (no invented codes).
        (
            lambda d: d["procedures"][-1].update(code="1.999999", official_code=False),
            f"procedures[{len(load_starter()['procedures']) - 1}].code",
        ),
        (lambda d: d["procedures"][0].update(official_code=False), "procedures[0].code"),
        (
            lambda d: d["document_types"][1].update(validity_months=3),
            "document_types[1].validity_months",
        ),
        (
            lambda d: d["document_types"].append(dict(d["document_types"][0])),
            f"document_types[{len(load_starter()['document_types'])}].code",
        ),
        (
            lambda d: d["procedures"][0]["requirements"].append(
                dict(d["procedures"][0]["requirements"][0])
            ),
            f"procedures[0].requirements[{len(load_starter()['procedures'][0]['requirements'])}]"
            ".document_type",
        ),
        (
            lambda d: d["procedures"][0]["requirements"][0].update(max_age_days=0),
            "procedures[0].requirements[0].max_age_days",
        ),
        (lambda d: d.pop("format"), "format"),
    ],
)
def test_bad_files_name_the_path(edit: Any, path: str) -> None:
    data = starter()
    edit(data)
    assert path in issue_paths(data)


def test_requirement_on_an_inactive_type_is_refused() -> None:
    data = starter()
    cccd = next(t for t in data["document_types"] if t["code"] == "cccd")
    cccd["active"] = False
    paths = issue_paths(data)
    assert paths
    assert all(p.endswith(".document_type") for p in paths)


def test_not_an_object() -> None:
    assert issue_paths([1, 2]) == ["(root)"]


# -- the reuse rules ---------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 30)


def requirement(**fields: Any) -> Requirement:
    values: dict[str, Any] = {
        "document_type": "judicial_record",
        "name_vi": "Phiếu lý lịch tư pháp",
        "name_en": "Judicial record certificate",
        "min_assurance": Assurance.self_declared,
        "required": True,
        "max_age_days": None,
        "validity_months": None,
    }
    values.update(fields)
    return Requirement(**values)


def paper(**fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "document_id": uuid.uuid4(),
        "type_code": "judicial_record",
        "title": "paper",
        "issued_on": None,
        "expires_on": None,
        "version": 1,
        "sha256": "0" * 64,
        "assurance": Assurance.self_declared,
        "committed_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        "revoked": False,
    }
    values.update(fields)
    return Candidate(**values)


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2024, 1, 31), 1) == dt.date(2024, 2, 29)
    assert add_months(dt.date(2026, 11, 15), 6) == dt.date(2027, 5, 15)


def test_expiry_day_itself_is_valid_and_validity_months_derive_expiry() -> None:
    assert assess(requirement(), [paper(expires_on=TODAY)], TODAY).status == "met"
    yesterday = TODAY - dt.timedelta(days=1)
    assert assess(requirement(), [paper(expires_on=yesterday)], TODAY).status == "expired"
    six = requirement(validity_months=6)
    issued = dt.date(2026, 5, 30)  # valid through 29 Nov 2026
    assert assess(six, [paper(issued_on=issued)], TODAY).status == "expired"
    assert assess(six, [paper(issued_on=dt.date(2026, 6, 1))], TODAY).status == "met"


def test_age_counts_from_issue_else_from_storage() -> None:
    month = requirement(max_age_days=30)
    assert assess(month, [paper(issued_on=TODAY - dt.timedelta(days=31))], TODAY).status == (
        "too_old"
    )
    assert assess(month, [paper(issued_on=TODAY - dt.timedelta(days=30))], TODAY).status == "met"
    stored = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    assert assess(month, [paper(committed_at=stored)], TODAY).status == "too_old"


def test_closest_candidate_and_reason_order() -> None:
    strong = requirement(min_assurance=Assurance.digitised, max_age_days=30)
    old_weak = paper(issued_on=dt.date(2020, 1, 1))
    weak = paper(issued_on=TODAY)
    verdict = assess(strong, [old_weak, weak], TODAY)
    assert verdict.status == RequirementStatus.assurance_too_low
    assert verdict.best_candidate is not None
    assert verdict.best_candidate.document_id == weak.document_id
    both = assess(strong, [old_weak], TODAY)
    assert both.reasons == [RequirementStatus.too_old, RequirementStatus.assurance_too_low]
    assert both.status == RequirementStatus.too_old
    revoked = assess(requirement(), [paper(revoked=True, assurance=Assurance.issued)], TODAY)
    assert revoked.status == RequirementStatus.revoked
    assert assess(requirement(), [], TODAY).status == RequirementStatus.missing


def test_best_of_several_stronger_then_newer() -> None:
    weak_new = paper(issued_on=TODAY)
    strong_old = paper(issued_on=dt.date(2026, 1, 1), assurance=Assurance.digitised)
    strong_new = paper(issued_on=dt.date(2026, 6, 1), assurance=Assurance.digitised)
    chosen = assess(requirement(), [weak_new, strong_old, strong_new], TODAY).document
    assert chosen is not None
    assert chosen.document_id == strong_new.document_id

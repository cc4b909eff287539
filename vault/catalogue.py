"""The starter catalogue of document types shipped with Kho (Vietnamese first).

Codes marked ``official_code=False`` are Kho's own identifiers, not codes from a national
catalogue.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vault.models import DocumentType

STARTER_DOCUMENT_TYPES: tuple[tuple[str, str, str, bool], ...] = (
    ("cccd", "Thẻ căn cước / Căn cước công dân", "Citizen identity card", True),
    ("birth_certificate", "Giấy khai sinh", "Birth certificate", False),
    ("marriage_certificate", "Giấy chứng nhận kết hôn", "Marriage certificate", False),
    ("marital_status", "Giấy xác nhận tình trạng hôn nhân", "Certificate of marital status", True),
    ("judicial_record", "Phiếu lý lịch tư pháp", "Judicial record certificate", True),
    ("driving_licence", "Giấy phép lái xe", "Driving licence", True),
    ("passport", "Hộ chiếu", "Passport", True),
    ("health_insurance", "Thẻ bảo hiểm y tế", "Health insurance card", True),
    (
        "land_use_certificate",
        "Giấy chứng nhận quyền sử dụng đất",
        "Land-use right certificate",
        False,
    ),
    (
        "household_business",
        "Giấy chứng nhận đăng ký hộ kinh doanh",
        "Household business registration",
        False,
    ),
    ("diploma", "Bằng tốt nghiệp", "Diploma", False),
    ("health_certificate", "Giấy khám sức khoẻ", "Health certificate", True),
    (
        "residence_confirmation",
        "Giấy xác nhận thông tin về cư trú",
        "Confirmation of residence",
        True,
    ),
    ("death_certificate", "Trích lục khai tử", "Death extract", False),
    ("other", "Giấy tờ khác", "Other paper", False),
)
_EXPIRING = {
    "cccd",
    "marital_status",
    "judicial_record",
    "driving_licence",
    "passport",
    "health_insurance",
    "health_certificate",
    "residence_confirmation",
}


def ensure_starter_catalogue(session: Session) -> int:
    """Add the starter document types that are missing; returns how many were added."""
    added = 0
    for code, name_vi, name_en, _official in STARTER_DOCUMENT_TYPES:
        if session.get(DocumentType, code) is None:
            session.add(
                DocumentType(
                    code=code,
                    name_vi=name_vi,
                    name_en=name_en,
                    expires=code in _EXPIRING,
                    official_code=False,
                )
            )
            added += 1
    session.flush()
    return added

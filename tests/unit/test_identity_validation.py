"""Personal ID numbers, tax codes and the calendar rules of the identity domain."""

from __future__ import annotations

import datetime as dt

import pytest

from identity.errors import InvalidPersonalId, InvalidTaxCode
from identity.service import (
    VIETNAM_TZ,
    add_years,
    age_on,
    coming_of_age,
    tax_code_check_digit,
    validate_personal_id,
    validate_tax_code,
)

# Enterprise codes of well-known Vietnamese companies, as printed on their invoices and in the
# national business registry.
REAL_TAX_CODES = {
    "0100109106": "Viettel (Tập đoàn Công nghiệp - Viễn thông Quân đội)",
    "0100112437": "Vietcombank (Ngân hàng TMCP Ngoại thương Việt Nam)",
    "0100150619": "BIDV (Ngân hàng TMCP Đầu tư và Phát triển Việt Nam)",
    "0100107518": "Vietnam Airlines (Tổng công ty Hàng không Việt Nam)",
    "0100100079": "EVN (Tập đoàn Điện lực Việt Nam)",
    "0101245486": "Vingroup (Tập đoàn Vingroup - CTCP)",
    "0300588569": "Vinamilk (Công ty CP Sữa Việt Nam)",
}


# -- personal identification numbers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("pin", "birth_date"),
    [
        ("001090123456", dt.date(1990, 5, 17)),  # Hà Nội, male, 20th century
        ("019190123456", dt.date(1990, 1, 1)),  # Thái Nguyên, female, 20th century
        ("096205000001", dt.date(2005, 12, 31)),  # the last province code, male, 21st century
        ("079314000001", dt.date(2014, 6, 1)),  # female, 21st century
        ("019099999999", None),  # without a birth date only the shape and province are checked
    ],
)
def test_valid_personal_ids(pin: str, birth_date: dt.date | None) -> None:
    validate_personal_id(pin, birth_date)


@pytest.mark.parametrize("province", ["000", "097", "099", "999"])
def test_unknown_province_codes_are_refused(province: str) -> None:
    with pytest.raises(InvalidPersonalId) as raised:
        validate_personal_id(f"{province}090123456")
    assert raised.value.code == "invalid_personal_id"
    assert raised.value.detail_en == "Unknown province code."


@pytest.mark.parametrize(
    ("century_digit", "year"),
    [
        ("0", 1990),
        ("1", 1990),
        ("2", 2090),
        ("3", 2090),
        ("4", 2190),
        ("5", 2190),
        ("6", 2290),
        ("7", 2290),
        ("8", 2390),
        ("9", 2390),
    ],
)
def test_century_digit_gives_the_century(century_digit: str, year: int) -> None:
    pin = f"019{century_digit}90123456"
    validate_personal_id(pin, dt.date(year, 1, 1))
    for other in (1890, 1990, 2090, 2190, 2290, 2390):
        if other != year:
            with pytest.raises(InvalidPersonalId):
                validate_personal_id(pin, dt.date(other, 1, 1))


def test_birth_year_must_match() -> None:
    validate_personal_id("019090123456", dt.date(1990, 12, 31))
    with pytest.raises(InvalidPersonalId) as raised:
        validate_personal_id("019090123456", dt.date(1991, 1, 1))
    assert "birth year" in (raised.value.detail_en or "")
    with pytest.raises(InvalidPersonalId):
        validate_personal_id("019290123456", dt.date(1990, 5, 17))  # 21st-century digit


@pytest.mark.parametrize(
    "pin",
    [
        "",
        "01909012345",  # 11 digits
        "0190901234567",  # 13 digits
        "01909012345a",
        "019-90123456",
        " 019090123456",
        "019090123456\n",  # a final newline must not slip through
        "01909012345６",  # a full-width digit
        "०१९०९०१२३४५६",  # Devanagari digits: digits to \d, not to a registry
    ],
)
def test_malformed_personal_ids_are_refused(pin: str) -> None:
    with pytest.raises(InvalidPersonalId) as raised:
        validate_personal_id(pin)
    assert raised.value.status == 422


# -- tax codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(REAL_TAX_CODES))
def test_real_enterprise_codes_pass(code: str) -> None:
    assert validate_tax_code(code) == code


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("0100109106-001", "0100109106001"),
        ("0100109106001", "0100109106001"),
        (" 0100112437-011 ", "0100112437011"),
        ("0314409058-002", "0314409058002"),
        ("0100109106-999", "0100109106999"),
    ],
)
def test_branch_codes_are_normalised(given: str, normalised: str) -> None:
    assert validate_tax_code(given) == normalised


def test_check_digit_formula() -> None:
    # 0100109106: 0·31 + 1·29 + 0·23 + 0·19 + 1·17 + 0·13 + 9·7 + 1·5 + 0·3 = 114; 114 mod 11 = 4
    assert tax_code_check_digit("010010910") == 10 - 114 % 11 == 6
    # A remainder of 10 gives 0 ...
    assert tax_code_check_digit("030251981") == 0
    assert validate_tax_code("0302519810") == "0302519810"
    # ... and a remainder of 0 would need a check digit of 10: such sequences are never issued.
    never_issued = next(
        f"01{n:07d}" for n in range(1, 10**7) if tax_code_check_digit(f"01{n:07d}") is None
    )
    for last in "0123456789":
        with pytest.raises(InvalidTaxCode):
            validate_tax_code(never_issued + last)


@pytest.mark.parametrize("code", sorted(REAL_TAX_CODES))
def test_every_single_digit_substitution_is_caught(code: str) -> None:
    # The weights are all non-zero modulo 11, so changing any one digit changes the sum modulo
    # 11 and the check digit no longer fits: no substitution anywhere may pass.
    for position in range(10):
        for digit in "0123456789":
            if digit == code[position]:
                continue
            altered = code[:position] + digit + code[position + 1 :]
            with pytest.raises(InvalidTaxCode):
                validate_tax_code(altered)


@pytest.mark.parametrize("code", sorted(REAL_TAX_CODES))
def test_adjacent_transpositions_in_the_body_are_caught(code: str) -> None:
    for position in range(8):
        a, b = code[position], code[position + 1]
        if a == b:
            continue
        swapped = code[:position] + b + a + code[position + 2 :]
        with pytest.raises(InvalidTaxCode):
            validate_tax_code(swapped)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "010010910",  # 9 digits
        "01001091066",  # 11 digits
        "010010910600",  # 12 digits
        "01001091060011",  # 14 digits
        "0100109106-01",  # a 2-digit branch
        "0100109106--001",
        "0100109106 001",
        "01001O9106",  # a letter O
        "01001\n09106",
        "０１００１０９１０６",  # full-width digits
        "0100000008",  # sequence 0000000 is never issued (its check digit would be 8)
        "0100109106-000",  # branches run from 001
        "0100109106000",
    ],
)
def test_malformed_tax_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidTaxCode) as raised:
        validate_tax_code(code)
    assert raised.value.code == "invalid_tax_code"
    assert raised.value.status == 422
    assert raised.value.detail_vi
    assert raised.value.detail_en


# -- calendar ----------------------------------------------------------------------------------


def test_add_years_keeps_the_day_or_takes_the_last_of_february() -> None:
    assert add_years(dt.date(2010, 3, 1), 18) == dt.date(2028, 3, 1)
    assert add_years(dt.date(2008, 2, 29), 18) == dt.date(2026, 2, 28)
    assert add_years(dt.date(2008, 2, 29), 4) == dt.date(2012, 2, 29)


def test_age_on() -> None:
    born = dt.date(2008, 6, 15)
    assert age_on(born, dt.date(2026, 6, 14)) == 17
    assert age_on(born, dt.date(2026, 6, 15)) == 18
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 2, 27)) == 17
    assert age_on(dt.date(2008, 2, 29), dt.date(2026, 2, 28)) == 18


def test_coming_of_age_is_midnight_in_vietnam() -> None:
    moment = coming_of_age(dt.date(2008, 6, 15))
    assert moment == dt.datetime(2026, 6, 14, 17, 0, tzinfo=dt.UTC)
    assert moment.astimezone(VIETNAM_TZ).time() == dt.time(0, 0)

"""Errors of the identity domain."""

from __future__ import annotations

from common.errors import Conflict, InvalidInput, NotFound, Unauthenticated


class AccountNotFound(NotFound):
    code = "account_not_found"
    title_vi = "Không tìm thấy tài khoản"
    title_en = "Account not found"


class CitizenNotFound(NotFound):
    """No enrolled citizen has this personal identification number."""

    code = "citizen_not_found"
    title_vi = "Không tìm thấy công dân với số định danh cá nhân này"
    title_en = "No citizen with this personal identification number"


class AccountErased(Unauthenticated):
    code = "account_erased"
    title_vi = "Tài khoản đã bị xoá"
    title_en = "The account was erased"


class InvalidPersonalId(InvalidInput):
    code = "invalid_personal_id"
    title_vi = "Số định danh cá nhân không hợp lệ"
    title_en = "Invalid personal identification number"


class InvalidTaxCode(InvalidInput):
    code = "invalid_tax_code"
    title_vi = "Mã số thuế (mã số doanh nghiệp) không hợp lệ"
    title_en = "Invalid tax code (enterprise code)"


class AgencyNotFound(NotFound):
    code = "agency_not_found"
    title_vi = "Không tìm thấy cơ quan"
    title_en = "Agency not found"


class OfficialNotFound(NotFound):
    code = "official_not_found"
    title_vi = "Không tìm thấy cán bộ"
    title_en = "Official not found"


class OrganisationNotFound(NotFound):
    code = "organisation_not_found"
    title_vi = "Không tìm thấy tổ chức"
    title_en = "Organisation not found"


class RepresentativeNotFound(NotFound):
    code = "representative_not_found"
    title_vi = "Không tìm thấy người đại diện"
    title_en = "Representative not found"


class DelegationNotFound(NotFound):
    code = "delegation_not_found"
    title_vi = "Không tìm thấy uỷ quyền"
    title_en = "Delegation not found"


class InvalidAgencyParent(InvalidInput):
    """A province has no parent, a district's is a province, a commune's is a district."""

    code = "invalid_agency_parent"
    title_vi = "Cơ quan cấp trên không phù hợp với cấp hành chính"
    title_en = "The parent agency does not fit the administrative level"


class InvalidDelegation(InvalidInput):
    """A delegation breaks a rule; the detail says which one."""

    code = "invalid_delegation"
    title_vi = "Uỷ quyền không hợp lệ"
    title_en = "Invalid delegation"


class InvalidRepresentative(InvalidInput):
    code = "invalid_representative"
    title_vi = "Người đại diện không hợp lệ"
    title_en = "Invalid representative"


class AgencyCodeTaken(Conflict):
    code = "agency_code_taken"
    title_vi = "Mã cơ quan đã được sử dụng"
    title_en = "The agency code is already taken"


class OfficialExists(Conflict):
    code = "official_exists"
    title_vi = "Cán bộ này đã được đăng ký tại cơ quan"
    title_en = "This official is already registered at the agency"


class TaxCodeTaken(Conflict):
    code = "tax_code_taken"
    title_vi = "Mã số thuế đã được đăng ký cho một tổ chức khác"
    title_en = "The tax code is already registered to an organisation"


class RepresentativeExists(Conflict):
    code = "representative_exists"
    title_vi = "Công dân này đang là người đại diện của tổ chức"
    title_en = "This citizen already represents the organisation"

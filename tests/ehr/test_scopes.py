"""The SMART scope grammar and the narrowing rule, on their own (no server)."""

from __future__ import annotations

import pytest

from aperture.ehr.errors import InvalidScope
from aperture.ehr.scopes import ResourceScope, grant, parse


@pytest.mark.parametrize(
    ("scope", "context", "resource", "permissions"),
    [
        ("patient/ImagingStudy.rs", "patient", "ImagingStudy", "rs"),
        ("patient/ImagingStudy.read", "patient", "ImagingStudy", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("user/*.*", "user", "*", "cruds"),
        ("system/Patient.write", "system", "Patient", "cud"),
        ("system/Patient.s", "system", "Patient", "s"),
    ],
)
def test_v1_and_v2_parse_to_the_same_permissions(scope: str, context: str, resource: str, permissions: str) -> None:
    assert parse(scope) == ResourceScope(context, resource, frozenset(permissions))


@pytest.mark.parametrize(
    "scope", ["openid", "fhirUser", "launch/patient", "offline_access", "patient/Observation.rs?category=x"]
)
def test_non_resource_scopes_are_literal(scope: str) -> None:
    assert parse(scope) is None


@pytest.mark.parametrize("scope", ["system/Patient.sr", "patient/Patient.rx", "user/Patient.", "system/Pat1ent.rs"])
def test_malformed_resource_scopes_are_refused(scope: str) -> None:
    with pytest.raises(InvalidScope, match="Scope"):
        parse(scope)


def test_covered_scopes_are_granted_as_written() -> None:
    result = grant("patient/ImagingStudy.read launch/patient", "patient/*.rs launch/patient")
    assert result.granted == ("patient/ImagingStudy.read", "launch/patient")
    assert result.refused == ()


def test_wider_scopes_are_narrowed_to_the_registration() -> None:
    result = grant("system/*.cruds", "system/ImagingStudy.rs system/Patient.r")
    assert result.granted == ("system/ImagingStudy.rs", "system/Patient.r")
    assert result.refused == ("system/*.cruds",)


def test_contexts_do_not_cross() -> None:
    result = grant("patient/ImagingStudy.rs system/ImagingStudy.rs", "user/*.rs system/*.rs", contexts=("system",))
    assert result.granted == ("system/ImagingStudy.rs",)
    assert result.refused == ("patient/ImagingStudy.rs",)


def test_literal_scopes_need_an_exact_registration_and_may_be_switched_off() -> None:
    assert grant("openid fhirUser", "openid").granted == ("openid",)
    assert grant("openid", "openid system/*.rs", contexts=("system",), literal=False).granted == ()


def test_nothing_registered_grants_nothing() -> None:
    result = grant("system/ImagingStudy.rs", "")
    assert result.granted == () and result.refused == ("system/ImagingStudy.rs",)

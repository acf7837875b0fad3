"""The attack suite covers every route the imaging server serves: its list comes from the route tables."""

from __future__ import annotations

from tests.security.attacks import PUBLIC, Target, attack_requests, declared_routes

TARGET = Target("p", "2.25.1", ["2.25.2"], [("2.25.2", "2.25.3")], ["Name"], "MRN", b"0123456789abcdef", "7FE00010")


def test_every_route_declares_an_action_or_is_public() -> None:
    undeclared = {(d.method, d.path) for d in declared_routes() if d.action is None}
    assert undeclared == PUBLIC, f"routes with no declared action and not public: {undeclared - PUBLIC}"


def test_every_declared_route_has_an_attack_case() -> None:
    attacked = {(a.declared.method, a.declared.path) for a in attack_requests(TARGET, reaching_patient="q")}
    declared = {(d.method, d.path) for d in declared_routes() if d.action is not None}
    assert declared == attacked
    assert len(declared) >= 32  # DICOMweb, STOW, DELETE, WADO-URI and the imaging FHIR endpoint, at least


def test_every_retrieval_names_the_target_in_its_url() -> None:
    for attack in attack_requests(TARGET, reaching_patient="q"):
        if attack.kind in ("retrieve", "search", "delete", "fhir-search") or "{study}" in attack.declared.path:
            assert TARGET.study in attack.url, attack.describe()

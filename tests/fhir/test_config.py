"""The `[fhir]` table: read, checked, and refused with a message that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.config import ConfigError, load_config


def test_fhir_table_is_read(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text(
        '[fhir]\nehr_base = "https://ehr.example.org/fhir/"\ndefault_issuer = "HOSP"\n'
        '[fhir.patient_identifier_systems]\n"http://hosp.example.org/mrn" = "HOSP"\n'
    )
    fhir = load_config(path).fhir
    assert fhir.ehr_base == "https://ehr.example.org/fhir"
    assert fhir.patient_identifier_systems == {"http://hosp.example.org/mrn": "HOSP"}
    assert (load_config().fhir.default_count, load_config().fhir.max_count) == (50, 200)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[fhir]\nehr_base = "ehr.example.org"\n', "fhir.ehr_base"),
        ('[fhir]\npatient_identifier_systems = ["x"]\n', "fhir.patient_identifier_systems"),
        ("[fhir]\ndefault_count = 500\n", "fhir.default_count"),
        ('[fhir]\nehr = "x"\n', "fhir.ehr"),
    ],
)
def test_wrong_fhir_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "a.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(path)

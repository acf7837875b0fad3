"""The Native DICOM Model writer on values no real file in the server tests holds (PS3.19 Annex A)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aperture.dicom.nativexml import NAMESPACE, native_xml

NS = "{" + NAMESPACE + "}"


def values(document: bytes, tag: str) -> list[str | None]:
    root = ET.fromstring(document)
    (attribute,) = [a for a in root if a.get("tag") == tag]
    return [v.text for v in attribute]


def test_text_that_xml_cannot_carry_is_replaced_and_carriage_returns_survive() -> None:
    document = native_xml(
        {
            "00081030": {"vr": "LO", "Value": ['bell\x07 escape\x1b & <tag> "quoted"']},
            "00204000": {"vr": "LT", "Value": ["one\r\ntwo\tthree"]},
            "00100020": {"vr": "LO", "Value": ["lone \udc80 surrogate"]},
        }
    )
    assert values(document, "00081030") == ['bell\ufffd escape\ufffd & <tag> "quoted"']
    assert values(document, "00204000") == ["one\r\ntwo\tthree"]  # &#13; keeps the CR through the parser
    assert values(document, "00100020") == ["lone \ufffd surrogate"]


def test_attribute_values_are_escaped() -> None:
    document = native_xml(
        {
            "00090010": {"vr": "LO", "Value": ['A "quoted" & <odd> creator']},
            "00091001": {"vr": "LO", "Value": ["x"]},
            "7FE00010": {"vr": "OW", "BulkDataURI": 'http://h/dicom-web/studies/1?a=1&b="2"'},
        }
    )
    root = ET.fromstring(document)
    private = [a for a in root if a.get("tag") == "00090001"][0]
    assert private.get("privateCreator") == 'A "quoted" & <odd> creator'
    (bulk,) = [a for a in root if a.get("tag") == "7FE00010"][0]
    assert bulk.tag == NS + "BulkData" and bulk.get("uri") == 'http://h/dicom-web/studies/1?a=1&b="2"'


def test_numbers_empty_values_and_names() -> None:
    document = native_xml(
        {
            "00280030": {"vr": "DS", "Value": [0.5, None, 2]},
            "00209165": {"vr": "AT", "Value": ["00100010"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "a^b^c^d^e^f"}, None]},
            "00180015": {"vr": "CS"},
        }
    )
    root = ET.fromstring(document)
    assert values(document, "00280030") == ["0.5", None, "2"]
    assert values(document, "00209165") == ["00100010"]
    assert values(document, "00180015") == []  # zero length: no child at all
    (name, empty) = [a for a in root if a.get("tag") == "00100010"][0]
    assert [name.get("number"), empty.get("number")] == ["1", "2"] and len(empty) == 0
    alphabetic = name.find(NS + "Alphabetic")
    assert alphabetic is not None
    components = {c.tag.removeprefix(NS): c.text for c in alphabetic}
    assert components["NameSuffix"] == "e^f"  # more than five components: the rest kept in the last

"""DICOM XML (the Native DICOM Model, PS3.19 Annex A) for metadata and search results (PS3.18 §10.4.4, §10.6).

Our XML is compared element by element with DCMTK's `dcm2xml --native-format` of the same stored file.
Differences accepted on purpose (each is a rule of our JSON, from which the XML is made):
- the file meta group (0002,xxxx) and Data Set Trailing Padding (FFFC,FFFC) are not in ours;
- bulk data (Pixel Data always, other binary values over 1 KiB) is `<BulkData uri=…>` in ours, where
  dcm2xml (run with +Eb) inlines it: the URI must point into this server;
- dcm2xml runs with +U8 (its values in UTF-8, like ours) and so rewrites Specific Character Set to
  ISO_IR 192, or adds it: ours keeps the value the file has (or none), as our JSON does;
- ours has Available Transfer Syntax UID (0008,3002), the stored syntax, which our metadata adds;
- decimal numbers (DS, FL, FD) are compared as numbers: JSON keeps the number, not its spelling ("0.50" is 0.5,
  and a FL is written with all the digits of its double);
- a keyword DCMTK 3.6.7's dictionary does not have (BeamDoseSpecificationPoint) may be in ours (pydicom's);
- a person name of only separators ("^^^^") is a PersonName without components in ours, nothing in dcm2xml's
  (the Value Field is not zero length, so PS3.19 Table A.1.5-2 requires the PersonName); an empty
  name among several is `<PersonName number="n"/>` in ours, with an empty Alphabetic group in dcm2xml's;
- dcm2xml repeats the Ideographic group as the Phonetic one when that is only padding ("…=王^小東= "):
  such a repeated group is left out of both sides;
- in implicit VR files, private elements whose creator pydicom's private dictionary knows have that VR
  in ours (as in our JSON) where dcm2xml says UN.
"""

from __future__ import annotations

import base64
import io
import math
import re
import subprocess
import xml.etree.ElementTree as ET
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.helpers import make_instance, stow

NS = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
XML_ACCEPT = 'multipart/related; type="application/dicom+xml"'
DCM2XML = "/usr/bin/dcm2xml"
NUMBERS = {"DS": float, "FL": float, "FD": float, "IS": int, "US": int, "SS": int, "UL": int, "SL": int,
           "SV": int, "UV": int}  # fmt: skip


def parts_of(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart answer, read by the standard library's MIME parser."""
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    assert message.is_multipart(), response.headers["content-type"]
    return [(str(part["Content-Type"]), part.get_payload(decode=True)) for part in message.iter_parts()]


def with_new_uids(path: str) -> bytes:
    ds = pydicom.dcmread(path)
    if "SOPClassUID" in ds and not ds.file_meta.get("MediaStorageSOPClassUID"):
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.TransferSyntaxUID = ds.file_meta.get("TransferSyntaxUID") or ExplicitVRLittleEndian
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def edge_cases() -> bytes:
    """Empty values, empty values inside multi-valued ones, private blocks, empty sequences and items."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "Doe^Jane^Q^Dr^III=ドウ^ジェーン=どう^じぇーん"
    ds.add_new(0x00081060, "PN", ["", "Solo", "^OnlyGiven"])  # NameOfPhysiciansReadingStudy
    ds.PatientID = ""
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.add_new(0x00180015, "CS", "")  # BodyPartExamined, zero length
    ds.PixelSpacing = ["0.50", "0.5"]
    ds.add_new(0x00280034, "IS", ["1", "", "3"])  # PixelAspectRatio
    ds.add_new(0x00181310, "US", [0, 256, 256, 0])  # AcquisitionMatrix
    ds.add_new(0x00209165, "AT", [0x00100010, 0x00200032])  # DimensionIndexPointer
    ds.add_new(0x00186022, "FD", [1.5, -2.25e-3])  # not a known VR mismatch: a plain FD list
    ds.add_new(0x00080081, "ST", 'Line 1\r\nLine 2 & <three> "four"')  # InstitutionAddress
    ds.add_new(0x00081140, "SQ", Sequence())  # ReferencedImageSequence, empty
    ds.add_new(0x00081250, "SQ", Sequence([Dataset(), Dataset()]))  # RelatedSeriesSequence, two empty items
    ds.add_new(0x00400275, "SQ", Sequence([Dataset()]))  # RequestAttributesSequence with one empty item
    ds.add_new(0x00420011, "OB", bytes(range(16)))  # EncapsulatedDocument: a short binary, inlined
    return _file(ds)


def private_blocks() -> bytes:
    """Two private blocks using the same element numbers, and a private sequence with its own creator."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.add_new(0x00090010, "LO", "ACME 1.0")  # reserves (0009,10xx)
    ds.add_new(0x00090011, "LO", "ACME 2.0")  # reserves (0009,11xx)
    ds.add_new(0x00091001, "LO", ["first", "", "third"])
    ds.add_new(0x00091002, "US", [7, 8])
    ds.add_new(0x00091101, "SH", "second block")
    item = Dataset()
    item.add_new(0x00290010, "LO", "NESTED CREATOR")
    item.add_new(0x00291001, "DS", ["1.25", "-3"])
    ds.add_new(0x00290010, "LO", "OUTER CREATOR")
    ds.add_new(0x00291002, "SQ", Sequence([item]))
    ds.add_new(0x00311001, "LO", "no creator element")
    ds.SpecificCharacterSet = "ISO_IR 192"
    return _file(ds)


def _file(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


SAMPLES = {
    "CT": lambda: with_new_uids(get_testdata_file("CT_small.dcm")),
    "MR": lambda: with_new_uids(get_testdata_file("MR_small.dcm")),
    "sequences (RT plan)": lambda: with_new_uids(get_testdata_file("rtplan.dcm")),
    "SR": lambda: with_new_uids(get_testdata_file("test-SR.dcm")),
    "Korean, multi-charset": lambda: with_new_uids(get_charset_files("chrKoreanMulti.dcm")[0]),
    "Russian": lambda: with_new_uids(get_charset_files("chrRuss.dcm")[0]),
    "UTF-8 names": lambda: with_new_uids(get_charset_files("chrX1.dcm")[0]),
    "French, multi-valued": lambda: with_new_uids(get_charset_files("chrFrenMulti.dcm")[0]),
    "edge cases": edge_cases,
}


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def normalize(root: ET.Element) -> dict[str, Any]:
    """A data set as {tag[|creator]: (vr, keyword, privateCreator, content)}, content compared per kind."""
    out: dict[str, Any] = {}
    for attr in root:
        assert local(attr.tag) == "DicomAttribute", attr.tag
        tag, vr = attr.get("tag", ""), attr.get("vr", "")
        children = list(attr)
        kinds = {local(c.tag) for c in children}
        assert len(kinds) <= 1, (tag, kinds)
        kind = kinds.pop() if kinds else None
        content: Any
        if kind is None:
            content = None
        elif kind == "Item":
            assert [c.get("number") for c in children] == [str(n) for n in range(1, len(children) + 1)], tag
            content = [normalize(c) for c in children]
        elif kind == "Value":
            assert [c.get("number") for c in children] == [str(n) for n in range(1, len(children) + 1)], tag
            content = [_value(vr, c.text) for c in children]
        elif kind == "PersonName":
            assert [c.get("number") for c in children] == [str(n) for n in range(1, len(children) + 1)], tag
            names = [{local(g.tag): {local(p.tag): p.text or "" for p in g} for g in c} for c in children]
            content = [{group: parts for group, parts in name.items() if parts} for name in names]
        elif kind == "InlineBinary":
            content = ("inline", base64.b64decode(children[0].text or ""))
        else:
            assert kind == "BulkData", (tag, kind)
            content = ("bulk", children[0].get("uri") or children[0].get("uuid"))
        creator = attr.get("privateCreator")
        # a private data element's tag is gggg00ee (PS3.19 Table A.1.5-2): with its creator it is unique
        out[f"{tag}|{creator}" if creator else tag] = (vr, attr.get("keyword"), creator, content)
    return out


def _value(vr: str, text: str | None) -> Any:
    if not text:
        return None
    kind = NUMBERS.get(vr)
    return kind(text) if kind is not None else text


def dcm2xml(data: bytes, tmp_path: Path, *, utf8: bool = True) -> ET.Element:
    """DCMTK's Native DICOM Model of a file: with its namespace (+Xn), binary inline (+Eb), values in UTF-8 (+U8).

    Without +U8 only Specific Character Set is kept (the rest may be in a charset no XML parser reads).
    """
    path = tmp_path / "in.dcm"
    path.write_bytes(data)
    options = ["--native-format", "+Xn", "+Eb", *(["+U8"] if utf8 else []), "--quiet"]
    done = subprocess.run([DCM2XML, *options, str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    if utf8:
        return ET.fromstring(done.stdout)
    found = re.search(rb'<DicomAttribute tag="00080005".*?</DicomAttribute>', done.stdout, re.DOTALL)
    assert found is not None
    root = f'<NativeDicomModel xmlns="{NS[1:-1]}">'.encode()
    return ET.fromstring(root + found.group() + b"</NativeDicomModel>")


def assert_same(ours: dict[str, Any], theirs: dict[str, Any], base: str, where: str = "") -> None:
    theirs = {t: v for t, v in theirs.items() if not t.startswith("0002") and t != "FFFCFFFC"}
    if not where:  # the top level: what only ours, or only dcm2xml +U8, adds
        ours = {t: v for t, v in ours.items() if t != "00083002"}
        if "00080005" not in ours:
            theirs.pop("00080005", None)
    assert not [t for t in ours if t.startswith("0002")], "file meta is not part of the metadata"
    assert sorted(ours) == sorted(theirs), where
    for tag, (vr, keyword, creator, content) in theirs.items():
        here = f"{where}/{tag}"
        our_vr, our_keyword, our_creator, our_content = ours[tag]
        assert our_creator == creator, here
        if keyword is not None or our_keyword is None:  # DCMTK 3.6.7's dictionary lacks a few newer keywords
            assert our_keyword == keyword, here
        if vr == "UN" and creator and our_vr != "UN":
            continue  # implicit VR: pydicom's private dictionary knows this creator's VRs, DCMTK's does not
        assert our_vr == vr, here
        if tag == "00080005":
            continue  # +U8 made it ISO_IR 192; compared with the file in the caller
        if isinstance(our_content, tuple) and our_content[0] == "bulk":
            assert str(our_content[1]).startswith(base + "/studies/"), here
            assert content is None or content[0] in ("inline", "bulk"), here
        elif vr in ("DS", "FL", "FD") and isinstance(content, list):
            assert len(our_content) == len(content), here
            for a, b in zip(our_content, content, strict=True):
                assert (a is None and b is None) or math.isclose(a, b, rel_tol=1e-6), here
        elif vr == "PN" and content is None and our_content is not None:  # a value of only "^" separators
            assert all(name == {} for name in our_content), here
        elif vr == "PN" and content is not None:
            for name in content:  # dcm2xml repeats the Ideographic group when the Phonetic one is only padding
                if "Phonetic" in name and name.get("Phonetic") == name.get("Ideographic"):
                    name.pop("Phonetic")
            for name in our_content:
                if "Phonetic" in name and name.get("Phonetic") == name.get("Ideographic"):
                    name.pop("Phonetic")
            assert our_content == content, here
        elif vr == "SQ" and content is not None:
            assert len(our_content) == len(content), here
            for n, (a, b) in enumerate(zip(our_content, content, strict=True)):
                assert_same(a, b, base, f"{here}[{n + 1}]")
        else:
            assert our_content == content, here


def person_name(value: dict[str, str]) -> dict[str, dict[str, str]]:
    """A DICOM JSON person name in the shape `normalize` gives XML ones: empty components left out."""
    parts = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
    return {group: {p: t for p, t in zip(parts, text.split("^"), strict=False) if t} for group, text in value.items()}


def metadata_xml(client: httpx.Client, url: str) -> list[ET.Element]:
    response = client.get(f"{url}/metadata", headers={"Accept": XML_ACCEPT})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith('multipart/related; type="application/dicom+xml"')
    parts = parts_of(response)
    assert all(ctype == "application/dicom+xml" for ctype, _ in parts)
    roots = [ET.fromstring(body) for _, body in parts]
    for root in roots:
        assert root.tag == NS + "NativeDicomModel"
        assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"  # PS3.19 Table A.1.5-1
    return roots


@pytest.mark.parametrize("name", list(SAMPLES))
def test_instance_metadata_xml_equals_dcm2xml(client: httpx.Client, tmp_path: Path, name: str) -> None:
    data = SAMPLES[name]()
    answer = stow(client, [data])
    assert answer.status_code == 200, answer.text
    url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    (root,) = metadata_xml(client, url)
    ours = normalize(root)
    assert_same(ours, normalize(dcm2xml(data, tmp_path)), client.base_url.join("").__str__().rstrip("/"))
    if "00080005" in ours:  # as the file has it (an empty first value included): dcm2xml without +U8
        assert ours["00080005"] == normalize(dcm2xml(data, tmp_path, utf8=False))["00080005"]


def test_study_and_series_metadata_have_one_document_per_instance(client: httpx.Client) -> None:
    study, series = generate_uid(), generate_uid()
    parts = [make_instance(study=study, series=series, instance_number=n + 1) for n in range(3)]
    assert stow(client, parts).status_code == 200
    json_study = client.get(f"/studies/{study}/metadata").json()
    for url in (f"/studies/{study}", f"/studies/{study}/series/{series}"):
        roots = metadata_xml(client, str(client.base_url.join(url.lstrip("/"))))
        assert len(roots) == len(json_study) == 3
        sops = sorted(normalize(r)["00080018"][3][0] for r in roots)
        assert sops == sorted(d["00080018"]["Value"][0] for d in json_study)


def test_metadata_parts_name_the_instance_metadata_they_hold(client: httpx.Client) -> None:
    """PS3.18 §8.6.1.2: each part of a study's XML metadata carries the Content-Location of that instance's metadata."""
    study, series = generate_uid(), generate_uid()
    assert (
        stow(client, [make_instance(study=study, series=series, instance_number=n + 1) for n in range(2)]).status_code
        == 200
    )
    response = client.get(f"/studies/{study}/metadata", headers={"Accept": XML_ACCEPT})
    assert response.status_code == 200
    raw = b"Content-Type: " + response.headers["content-type"].encode() + b"\r\n\r\n" + response.content
    parts = list(BytesParser(policy=HTTP).parsebytes(raw).iter_parts())
    assert len(parts) == 2
    for part in parts:
        location = str(part["Content-Location"])
        sop = normalize(ET.fromstring(part.get_payload(decode=True)))["00080018"][3][0]
        assert (
            location == f"{str(client.base_url).rstrip('/')}/studies/{study}/series/{series}/instances/{sop}/metadata"
        )
        again = client.get(location, headers={"Accept": "application/dicom+xml"})
        assert again.status_code == 200 and again.content == part.get_payload(decode=True)


def test_xml_metadata_etag_and_304_like_json(client: httpx.Client) -> None:
    study = generate_uid()
    assert stow(client, [make_instance(study=study)]).status_code == 200
    url = f"/studies/{study}/metadata"
    xml = client.get(url, headers={"Accept": XML_ACCEPT})
    json = client.get(url)
    assert xml.status_code == json.status_code == 200
    assert xml.headers["etag"] and xml.headers["etag"] != json.headers["etag"]
    assert xml.headers["vary"] == json.headers["vary"] == "Accept, Accept-Encoding"  # one URL, two representations
    again = client.get(url, headers={"Accept": XML_ACCEPT, "If-None-Match": xml.headers["etag"]})
    assert again.status_code == 304  # (the answer was gzip-compressed: its ETag is that of the variant)
    assert again.headers["etag"].strip('"') == xml.headers["etag"].strip('"').removesuffix("-gzip")
    assert client.get(url, headers={"Accept": XML_ACCEPT}).content == xml.content  # same bytes, same boundary


def test_accept_negotiation_for_metadata(client: httpx.Client) -> None:
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    assert stow(client, [make_instance(study=study, series=series, sop=sop)]).status_code == 200
    url = f"/studies/{study}/metadata"
    for accept in ("*/*", "application/json", "application/dicom+json", ""):
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 200 and response.headers["content-type"] == "application/dicom+json", accept
    preferred = client.get(url, headers={"Accept": f"application/dicom+json; q=0.5, {XML_ACCEPT}"})
    assert preferred.headers["content-type"].startswith("multipart/related")
    untyped = client.get(url, headers={"Accept": "multipart/related"})  # the one multipart form metadata has
    assert untyped.headers["content-type"].startswith('multipart/related; type="application/dicom+xml"')
    by_parameter = client.get(url, params={"accept": XML_ACCEPT}, headers={"Accept": "application/dicom+json"})
    assert by_parameter.headers["content-type"].startswith("multipart/related")
    # One instance is a single response item: a single-part application/dicom+xml is allowed (PS3.18 §10.4.4)
    single = client.get(
        f"/studies/{study}/series/{series}/instances/{sop}/metadata", headers={"Accept": "application/dicom+xml"}
    )
    assert single.status_code == 200 and single.headers["content-type"] == "application/dicom+xml"
    assert ET.fromstring(single.content).tag == NS + "NativeDicomModel"
    # ... but not for a study: its metadata is a list
    refused = client.get(url, headers={"Accept": "application/dicom+xml"})
    assert refused.status_code == 406
    message = refused.json()["message"]
    assert "application/dicom+json" in message and 'multipart/related; type="application/dicom+xml"' in message
    assert client.get(url, headers={"Accept": "text/html"}).status_code == 406


def test_search_results_as_xml_equal_the_json_ones(client: httpx.Client) -> None:
    study = generate_uid()
    tag = generate_uid()[-10:]
    parts = [make_instance(study=study, patient_id=f"X{tag}", patient_name="Müller^Anna", instance_number=n + 1)
             for n in range(3)]  # fmt: skip
    assert stow(client, parts).status_code == 200
    for path, params in (
        ("/studies", {"PatientID": f"X{tag}"}),
        ("/series", {"PatientID": f"X{tag}"}),
        ("/instances", {"PatientID": f"X{tag}"}),
        (f"/studies/{study}/series", {}),
        (f"/studies/{study}/instances", {}),
        ("/instances", {"PatientID": f"X{tag}", "limit": "2"}),
    ):
        json = client.get(path, params=params)
        xml = client.get(path, params=params, headers={"Accept": XML_ACCEPT})
        assert json.status_code == xml.status_code == 200, (path, xml.text)
        results = json.json()
        parts_ = parts_of(xml)
        assert len(parts_) == len(results) > 0, path
        assert xml.headers.get("warning") == json.headers.get("warning"), path
        for (ctype, body), result in zip(parts_, results, strict=True):
            assert ctype == "application/dicom+xml"
            document = normalize(ET.fromstring(body))
            assert sorted(document) == sorted(result), path
            for key, element in result.items():
                vr, _, _, content = document[key]
                assert vr == element["vr"], (path, key)
                if vr == "PN":
                    assert content == [person_name(v) for v in element["Value"]], (path, key)
                else:
                    assert content == element.get("Value"), (path, key)
    assert client.get("/studies", params={"PatientID": f"X{tag}"}).headers.get("warning") is None
    paged = client.get("/instances", params={"PatientID": f"X{tag}", "limit": "2"}, headers={"Accept": XML_ACCEPT})
    assert paged.headers["warning"].startswith("299 ")


def test_search_accept_negotiation(client: httpx.Client) -> None:
    assert client.get("/studies", params={"limit": "1"}).headers["content-type"] == "application/dicom+json"
    via_parameter = client.get("/studies", params={"limit": "1", "accept": XML_ACCEPT})
    assert via_parameter.status_code == 200 and via_parameter.headers["content-type"].startswith("multipart/related")
    refused = client.get("/studies", headers={"Accept": "application/dicom+xml"})  # results are a list: multipart
    assert refused.status_code == 406
    assert 'multipart/related; type="application/dicom+xml"' in refused.json()["message"]
    nothing = client.get("/studies", params={"PatientID": generate_uid()}, headers={"Accept": XML_ACCEPT})
    assert nothing.status_code == 200 and nothing.content == b""  # no match: an empty body, no part


def test_private_elements_name_their_creator(client: httpx.Client) -> None:
    """PS3.19 Table A.1.5-2: a private data element is tag gggg00ee with privateCreator; its creator has neither.

    (dcm2xml 3.6.7 leaves privateCreator out for explicit VR files, so this is checked against the standard.)
    """
    answer = stow(client, [private_blocks()])
    assert answer.status_code == 200, answer.text
    (root,) = metadata_xml(client, answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0])
    ours = normalize(root)
    assert ours["00090010"] == ("LO", None, None, ["ACME 1.0"])
    assert ours["00090011"] == ("LO", None, None, ["ACME 2.0"])
    assert ours["00090001|ACME 1.0"] == ("LO", None, "ACME 1.0", ["first", None, "third"])
    assert ours["00090002|ACME 1.0"] == ("US", None, "ACME 1.0", [7, 8])
    assert ours["00090001|ACME 2.0"] == ("SH", None, "ACME 2.0", ["second block"])
    (item,) = ours["00290002|OUTER CREATOR"][3]
    assert item["00290010"] == ("LO", None, None, ["NESTED CREATOR"])
    assert item["00290001|NESTED CREATOR"] == ("DS", None, "NESTED CREATOR", [1.25, -3])
    assert ours["00311001"][2] is None  # no creator element to name: the whole tag stays
    assert not [a for a in root.iter(NS + "DicomAttribute") if a.get("tag", "").startswith("0009") and a.get("keyword")]

"""Video and documents: the BulkDataURI of MPEG-4 pixel data or an encapsulated PDF returns the thing itself."""

from __future__ import annotations

import io

import httpx
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.dicomweb.test_wado import split_multipart
from tests.helpers import stow

MPEG4 = "1.2.840.10008.1.2.4.102"
FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # a codestream, as far as the server cares


def _part10(ds: Dataset, transfer_syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _common(ds: Dataset) -> Dataset:
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.StudyDate = "VID-1", "Video^Patient", "20240101"
    return ds


def _bulk_uri(client: httpx.Client, retrieve_url: str, tag: str) -> str:
    return str(client.get(retrieve_url + "/metadata").json()[0][tag]["BulkDataURI"])


def test_mpeg4_pixel_data_is_served_as_one_video(client: httpx.Client) -> None:
    ds = _common(Dataset())
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4.1"  # Video Photographic Image Storage
    ds.Modality = "XC"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 480, 640, 120
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated = 3, "YBR_PARTIAL_420", 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation, ds.PlanarConfiguration = 8, 7, 0, 0
    half = len(FAKE_MP4) // 2
    ds.PixelData = encapsulate([FAKE_MP4[:half], FAKE_MP4[half:]])  # one stream in two fragments
    ds["PixelData"].VR = "OB"
    answer = stow(client, [_part10(ds, MPEG4)]).json()
    url = answer["00081199"]["Value"][0]["00081190"]["Value"][0]
    uri = _bulk_uri(client, url, "7FE00010")
    video = client.get(uri, headers={"Accept": "video/mp4"})
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content == FAKE_MP4
    multipart = client.get(uri, headers={"Accept": "multipart/related; type=video/mp4"})
    ((ctype, body),) = split_multipart(multipart)
    assert ctype.startswith("video/mp4") and MPEG4 in ctype and body == FAKE_MP4


def test_encapsulated_pdf_is_served_as_the_document(client: httpx.Client) -> None:
    pdf = b"%PDF-1.4\n" + b"0" * 5000 + b"\n%%EOF\n"
    ds = _common(Dataset())
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf
    answer = stow(client, [_part10(ds, ExplicitVRLittleEndian)]).json()
    url = answer["00081199"]["Value"][0]["00081190"]["Value"][0]
    uri = _bulk_uri(client, url, "00420011")
    document = client.get(uri, headers={"Accept": "application/pdf"})
    assert document.status_code == 200
    assert document.headers["content-type"] == "application/pdf"
    assert document.content.rstrip(b"\x00") == pdf.rstrip(b"\x00")
    assert client.get(uri, headers={"Accept": "application/octet-stream"}).content == document.content

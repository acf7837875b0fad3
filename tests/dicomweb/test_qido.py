"""QIDO-RS (PS3.18 §10.6, PS3.4 C.2.2.2): matching, includefield, paging, and the study aggregates."""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.helpers import make_instance, store_sample, stow


@pytest.fixture(scope="module")
def corpus(server) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Three studies of one tagged patient set, stored once for this module."""
    tag = generate_uid()[-10:]
    ids = {"tag": tag, "a": generate_uid(), "b": generate_uid(), "c": generate_uid(), "series_a2": generate_uid()}
    parts = [
        make_instance(study=ids["a"], patient_id=f"Q{tag}-1", patient_name="Müller^Anna", study_date="20180315",
                      modality="CT", accession=f"A{tag}", series_number=1, instance_number=1,
                      extra={"StudyDescription": "CT Chest", "BodyPartExamined": "CHEST"}),
        make_instance(study=ids["a"], series=ids["series_a2"], patient_id=f"Q{tag}-1", patient_name="Müller^Anna",
                      study_date="20180315", modality="SR", accession=f"A{tag}", series_number=2, instance_number=1),
        make_instance(study=ids["a"], series=ids["series_a2"], patient_id=f"Q{tag}-1", patient_name="Müller^Anna",
                      study_date="20180315", modality="SR", accession=f"A{tag}", series_number=2, instance_number=2),
        make_instance(study=ids["b"], patient_id=f"Q{tag}-2", patient_name="Smith^Bob", study_date="20190701",
                      modality="MR", accession=f"B{tag}"),
        make_instance(study=ids["c"], patient_id=f"Q{tag}-3", patient_name="SMITHERS^Carl", study_date="20200102",
                      modality="CR", accession=f"C{tag}"),
    ]  # fmt: skip
    with httpx.Client(base_url=server.dicomweb, timeout=30) as http:
        assert stow(http, parts).status_code == 200
    return ids


def uids(datasets: list[dict]) -> set[str]:  # type: ignore[type-arg]
    return {d["0020000D"]["Value"][0] for d in datasets}


def search(client: httpx.Client, path: str = "/studies", **params: str) -> list[dict]:  # type: ignore[type-arg]
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_study_answer_has_the_required_attributes(client: httpx.Client, corpus: dict[str, str]) -> None:
    (study,) = search(client, StudyInstanceUID=corpus["a"])
    required = "00080020 00080030 00080050 00080056 00080061 00080090 00081190 00100010 00100020 00100030 00100040"
    for tag in [*required.split(), "0020000D", "00200010", "00201206", "00201208"]:
        assert tag in study, tag
    assert sorted(study["00080061"]["Value"]) == ["CT", "SR"]
    assert study["00201206"]["Value"] == [2]
    assert study["00201208"]["Value"] == [3]
    assert study["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{corpus['a']}")


def test_single_value_and_uid_list(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    assert uids(search(client, PatientID=f"Q{tag}-2")) == {corpus["b"]}
    both = search(client, StudyInstanceUID=f"{corpus['a']},{corpus['c']}")
    assert uids(both) == {corpus["a"], corpus["c"]}
    both = search(client, StudyInstanceUID=f"{corpus['a']}\\{corpus['b']}")
    assert uids(both) == {corpus["a"], corpus["b"]}


def test_person_names_match_case_insensitively_with_wildcards(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    assert uids(search(client, PatientName="smith^bob", PatientID=f"Q{tag}-*")) == {corpus["b"]}
    assert uids(search(client, PatientName="SMITH*", PatientID=f"Q{tag}-*")) == {corpus["b"], corpus["c"]}
    assert uids(search(client, PatientName="m?ller*", PatientID=f"Q{tag}-*")) == {corpus["a"]}
    assert search(client, PatientName="smith", PatientID=f"Q{tag}-*") == []  # single value is the whole name


def test_fuzzy_matching_widens_to_name_components(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    fuzzy = search(client, PatientName="bob", PatientID=f"Q{tag}-*", fuzzymatching="true")
    assert uids(fuzzy) == {corpus["b"]}
    assert search(client, PatientName="bob", PatientID=f"Q{tag}-*", fuzzymatching="false") == []


def test_wildcards_on_other_strings_are_case_sensitive(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    assert uids(search(client, AccessionNumber=f"?{tag}")) == {corpus["a"], corpus["b"], corpus["c"]}
    assert search(client, PatientID=f"q{tag}-*") == []


def test_date_ranges(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    mine = {"PatientID": f"Q{tag}-*"}
    assert uids(search(client, StudyDate="20190101-20191231", **mine)) == {corpus["b"]}
    assert uids(search(client, StudyDate="-20190101", **mine)) == {corpus["a"]}
    assert uids(search(client, StudyDate="20190101-", **mine)) == {corpus["b"], corpus["c"]}
    assert uids(search(client, StudyDate="20200102", **mine)) == {corpus["c"]}


def test_modalities_in_study_and_study_level_modality(client: httpx.Client, corpus: dict[str, str]) -> None:
    tag = corpus["tag"]
    assert uids(search(client, ModalitiesInStudy="SR", PatientID=f"Q{tag}-*")) == {corpus["a"]}
    assert uids(search(client, ModalitiesInStudy="MR,CR", PatientID=f"Q{tag}-*")) == {corpus["b"], corpus["c"]}
    # OHIF sends Modality at study level: it means ModalitiesInStudy, never an error
    assert uids(search(client, Modality="CT", PatientID=f"Q{tag}-*")) == {corpus["a"]}
    answer = search(client, includefield="00080060", PatientID=f"Q{tag}-1")
    assert sorted(answer[0]["00080061"]["Value"]) == ["CT", "SR"]


def test_includefield_named_and_all(client: httpx.Client, corpus: dict[str, str]) -> None:
    (plain,) = search(client, StudyInstanceUID=corpus["a"])
    assert "00081030" in plain  # StudyDescription is a default return key
    assert "00100021" in plain
    (named,) = search(client, StudyInstanceUID=corpus["a"], includefield="PatientBirthDate,00080062")
    assert named["00100030"]["Value"] == ["19800101"]
    assert "00080062" in named
    (everything,) = search(client, StudyInstanceUID=corpus["a"], includefield="all")
    assert everything["00081030"]["Value"] == ["CT Chest"]


def test_limit_offset_are_exact_and_stable_with_a_warning(client: httpx.Client, corpus: dict[str, str]) -> None:
    mine = {"PatientID": f"Q{corpus['tag']}-*"}
    everything = [d["0020000D"]["Value"][0] for d in search(client, **mine)]
    assert len(everything) == 3
    page1 = client.get("/studies", params={**mine, "limit": "2"})
    assert "additional results" in page1.headers["warning"]
    page2 = client.get("/studies", params={**mine, "limit": "2", "offset": "2"})
    assert "warning" not in page2.headers
    pages = [d["0020000D"]["Value"][0] for d in page1.json() + page2.json()]
    assert pages == everything


def test_series_and_instance_levels(client: httpx.Client, corpus: dict[str, str]) -> None:
    series = search(client, f"/studies/{corpus['a']}/series")
    assert [s["00080060"]["Value"][0] for s in series] == ["CT", "SR"]
    assert series[1]["00201209"]["Value"] == [2]
    sr_only = search(client, f"/studies/{corpus['a']}/series", Modality="SR")
    assert [s["0020000E"]["Value"][0] for s in sr_only] == [corpus["series_a2"]]
    instances = search(client, f"/studies/{corpus['a']}/instances")
    assert len(instances) == 3
    in_series = search(client, f"/studies/{corpus['a']}/series/{corpus['series_a2']}/instances")
    assert [i["00200013"]["Value"][0] for i in in_series] == [1, 2]
    one = search(client, f"/studies/{corpus['a']}/series/{corpus['series_a2']}/instances", InstanceNumber="2")
    assert len(one) == 1
    all_series = search(client, "/series", PatientID=f"Q{corpus['tag']}-1")
    assert len(all_series) == 2 and all("00100020" in s for s in all_series)
    all_instances = search(client, "/instances", PatientID=f"Q{corpus['tag']}-1", Modality="SR")
    assert len(all_instances) == 2


def test_study_level_match_on_series_attribute_returns_each_study_once(
    client: httpx.Client, corpus: dict[str, str]
) -> None:
    found = search(client, PatientID=f"Q{corpus['tag']}-1", SeriesDescription="Test*")
    assert len(found) == 1
    found = search(client, PatientID=f"Q{corpus['tag']}-1", BodyPartExamined="CHEST")
    assert uids(found) == {corpus["a"]}


def test_unknown_keys_and_bad_values_are_400_naming_the_key(client: httpx.Client) -> None:
    for params, needle in (
        ({"PatientNam": "x"}, "PatientNam"),
        ({"StudyDate": "2018-01-01"}, "StudyDate"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"includefield": "NoSuchAttribute"}, "NoSuchAttribute"),
    ):
        response = client.get("/studies", params=params)
        assert response.status_code == 400, params
        assert needle in response.json()["message"]


def test_unknown_study_in_path_is_404_and_json_only(client: httpx.Client) -> None:
    assert client.get(f"/studies/{generate_uid()}/series").status_code == 404
    response = client.get("/studies", headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406


def test_precomputed_study_answer_equals_the_computed_one(client: httpx.Client, corpus: dict[str, str]) -> None:
    """The default study answer is kept precomputed at write time; it must match a fresh computation."""
    mine = {"PatientID": f"Q{corpus['tag']}-*"}
    precomputed = search(client, **mine)
    computed = search(client, **mine, includefield="00081032")  # a non-default field forces the slow path
    assert precomputed == computed
    study = corpus["a"]
    assert stow(client, [make_instance(study=study, patient_id=f"Q{corpus['tag']}-1", patient_name="Müller^Anna",
                                       modality="PR", accession=f"A{corpus['tag']}")]).status_code == 200  # fmt: skip
    (after,) = search(client, StudyInstanceUID=study)
    assert sorted(after["00080061"]["Value"]) == ["CT", "PR", "SR"]
    assert after["00201208"]["Value"] == [4]
    assert after == search(client, StudyInstanceUID=study, includefield="00081032")[0]


def test_series_answers_carry_named_study_attributes(client: httpx.Client, corpus: dict[str, str]) -> None:
    series = search(client, "/series", PatientID=f"Q{corpus['tag']}-2", includefield="PatientBirthDate")
    assert series and all(s["00100030"]["Value"] == ["19800101"] for s in series)
    instances = search(client, "/instances", PatientID=f"Q{corpus['tag']}-2", PatientSex="F", includefield="00100030")
    assert instances and all("00100040" in i and "00100030" in i for i in instances)


def test_an_acr_nema_dotted_study_date_matches_as_a_date(client: httpx.Client) -> None:
    """color-pl.dcm has StudyDate 1994.11.05 (the old YYYY.MM.DD form): it matches 19941105 and ranges."""
    _, url = store_sample(client, "color-pl.dcm")
    study = url.split("/studies/", 1)[1].split("/", 1)[0]
    for date in ("19941105", "19941101-19941130", "-19941105", "19941105-"):
        assert uids(search(client, StudyInstanceUID=study, StudyDate=date)) == {study}, date
    assert search(client, StudyInstanceUID=study, StudyDate="19941106-") == []
    (answer,) = search(client, StudyInstanceUID=study)
    assert answer["00080020"]["Value"] == ["1994.11.05"]  # the stored value is returned as sent


@pytest.mark.parametrize(
    ("key", "value", "form"),
    [
        ("StudyDate", "2020-01-01", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
        ("StudyDate", "20200101-2021", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
        ("StudyDate", "01/02/2020", "YYYYMMDD or a range YYYYMMDD-YYYYMMDD"),
        ("StudyTime", "25h", "HHMMSS"),
    ],
)
def test_a_bad_date_or_time_is_quoted_as_sent_with_the_expected_form(
    client: httpx.Client, key: str, value: str, form: str
) -> None:
    answer = client.get("/studies", params={key: value})
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert f"{key}='{value}' is not a valid" in message and form in message, message


def _refused(client: httpx.Client, path: str, params: dict[str, str] | str, *needles: str) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 400, (str(params)[:200], response.status_code, response.text[:300])
    message = response.json()["message"]
    assert all(needle in message for needle in needles), (str(params)[:200], message)


def test_numbers_int_cannot_read_are_400_not_500(client: httpx.Client) -> None:
    """'²'.isdigit() is True but int('²') raises; a 5000-digit number is past int()'s digit limit."""
    _refused(client, "/studies", {"limit": "²"}, "limit")
    _refused(client, "/studies", {"offset": "¹"}, "offset")
    _refused(client, "/studies", {"limit": "1" * 5000}, "limit")
    _refused(client, "/studies", {"offset": "9" * 5000}, "offset")


def test_offset_past_its_bound_is_400_naming_it(client: httpx.Client) -> None:
    """offset=10**26 overflowed SQLite's integers (a 500)."""
    _refused(client, "/studies", {"offset": "99999999999999999999999999"}, "offset", "1000000000")
    _refused(client, "/series", {"offset": "1000000001"}, "1000000000")
    assert client.get("/studies", params={"offset": "1000000000"}).json() == []


@pytest.mark.parametrize(
    ("path", "key", "value", "needle"),
    [
        ("/instances", "InstanceNumber", "99999999999999999999999999", "2147483647"),  # SQL column, IS
        ("/series", "SeriesNumber", "2147483648", "2147483647"),  # SQL column, IS
        ("/instances", "InstanceNumber", "-2147483649", "-2147483648"),
        ("/instances", "AcquisitionNumber", "99999999999999999999999", "2147483647"),  # IS matched on JSON
        ("/instances", "Rows", "65536", "65535"),  # US
        ("/instances", "Rows", "-1", "US"),
        ("/instances", "SliceThickness", "1" * 17, "DS"),  # more than DS's 16 characters
        ("/instances", "SliceThickness", "nan", "DS"),
        ("/instances", "SliceThickness", "1e999", "DS"),
        ("/instances", "InstanceNumber", "١", "integer"),  # an Arabic-Indic digit: \d matches it, DICOM does not
    ],
)
def test_numeric_keys_outside_their_vr_are_400_on_both_backends(
    client: httpx.Client, path: str, key: str, value: str, needle: str
) -> None:
    _refused(client, path, {key: value}, key, needle)


def test_numeric_keys_match_by_value(client: httpx.Client, corpus: dict[str, str]) -> None:
    """An integer key is compared as a number: '+0002' finds instance number 2 (SQL) as '2' does."""
    found = search(client, f"/studies/{corpus['a']}/instances", InstanceNumber="+0002")
    assert [d["00200013"]["Value"] for d in found] == [[2]]
    assert search(client, f"/studies/{corpus['a']}/instances", InstanceNumber="2147483647") == []


def test_an_empty_key_is_400(client: httpx.Client) -> None:
    """`?=1` was read as a key pydicom maps to a tag ('' gave 0x300A0002) and answered 200 []."""
    _refused(client, "/studies", "=1", "empty")
    _refused(client, "/studies", "PatientID=x&=", "empty")


def test_query_size_bounds_are_400_naming_the_bound(client: httpx.Client) -> None:
    keys = "&".join(f"PatientID=x{n}" for n in range(65))
    _refused(client, "/studies", keys, "64")
    fields = ",".join(f"{0x00090010 + n:08X}" for n in range(257))  # private tags: any number is known
    _refused(client, "/studies", {"includefield": fields}, "includefield", "256")
    uid_list = ",".join(f"1.2.{n}" for n in range(1001))
    _refused(client, "/studies", {"StudyInstanceUID": uid_list}, "1000")
    _refused(client, "/studies", {"ModalitiesInStudy": "\\".join(["CT"] * 65)}, "64")
    _refused(client, "/studies", {"PatientName": "*" + "a" * 128}, "128")
    # 3000 words made an AND of 3000 ORs, deeper than SQLite's expression limit: a 500
    _refused(client, "/studies", {"PatientName": " ".join(["ab"] * 3000), "fuzzymatching": "true"}, "16")
    _refused(client, "/studies", {"ContentSequence." * 17 + "CodeValue": "x"}, "16")
    assert client.get("/studies", params={"PatientName": "a b c", "fuzzymatching": "true"}).status_code == 200
    too_long = client.get("/studies", params={"StudyDescription": "x" * 65_500})  # granian's URL bound
    assert too_long.status_code == 414
    # at the bounds: answered
    assert client.get("/studies", params="&".join(f"PatientID=x{n}" for n in range(64))).status_code == 200
    uid_list = ",".join(f"1.2.{n}" for n in range(1000))
    assert client.get("/studies", params={"StudyInstanceUID": uid_list}).json() == []


def test_a_wildcard_with_many_stars_is_matched_in_linear_time(client: httpx.Client) -> None:
    """`*a*a*…*b` against "aaaa…" made the old regex backtrack through every split (minutes at 12 stars).

    ImageComments is not in the index, so it is matched on the stored JSON, by that regex.
    """
    study = generate_uid()
    assert stow(client, [make_instance(study=study, extra={"ImageComments": "a" * 64})]).status_code == 200
    pattern = "*a" * 20 + "*b"
    with httpx.Client(base_url=str(client.base_url), timeout=120) as http:
        response = http.get(f"/studies/{study}/instances", params={"ImageComments": pattern})
    assert response.status_code == 200 and response.json() == []
    assert len(search(client, f"/studies/{study}/instances", ImageComments="*a" * 20 + "*")) == 1


def test_a_nul_in_a_value_is_400_on_both_backends(client: httpx.Client) -> None:
    """PostgreSQL refuses NUL in a string literal: it was a 500 there (found by tests/server/test_fuzz.py)."""
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "ModalitiesInStudy", "AccessionNumber"):
        _refused(client, "/studies", {key: "a\x00b"}, key, "NUL")

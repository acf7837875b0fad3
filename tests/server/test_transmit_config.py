"""`[[transmit.destinations]]`: read from TOML, and refused with a message naming the entry when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from aperture.config import ConfigError, load_config


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aperture.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_destinations_are_read_in_order_with_their_kind(tmp_path: Path) -> None:
    read = load_config(config(tmp_path, """
[[transmit.destinations]]
name = "PACS"
to = "dimse:PACS@pacs.example:104"
calling_aet = "US"
[[transmit.destinations]]
name = "Archive"
to = "dicomweb:https://archive.example/dicom-web/"
token_env = "ARCHIVE_TOKEN"
"""))  # fmt: skip
    pacs, archive = read.transmit.destinations
    assert (pacs.name, pacs.kind, pacs.calling_aet) == ("PACS", "dimse", "US")
    assert (archive.kind, archive.token_env) == ("dicomweb", "ARCHIVE_TOKEN")
    assert read.transmit.named("Archive") is archive and read.transmit.named("archive") is None
    assert load_config().transmit.destinations == ()


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ('name = "A"\nto = "pacs:104"', "must be dicomweb:URL or dimse:AET@host:port"),
        ('name = "A"\nto = "dicomweb:ftp://x"', "is not an http(s) URL"),
        ('name = "A"\nto = "dimse:NOPORT@host"', "is not AET@host:port"),
        ('to = "dimse:A@h:104"', "needs name and to"),
        ('name = "A"\nto = "dimse:A@h:104"\nhost = "x"', "found host, name, to"),
        ('name = "A"\nto = "dimse:A@h:104"\ntoken_file = "t"', "C-STORE sends no credentials"),
        (
            'name = "A"\nto = "dicomweb:https://x"\ntoken_file = "t"\nbasic_env = "B"',
            "at most one of token_file, basic_env",
        ),
        ('name = ""\nto = "dimse:A@h:104"', "need a name of 1-64 printable characters"),
        (
            'name = "A"\nto = "dimse:A@h:104"\ncalling_aet = "MUCH-TOO-LONG-AE-TITLE"',
            "'calling_aet' must be an AE title",
        ),
    ],
)
def test_a_wrong_destination_is_refused_naming_what_is_wrong(tmp_path: Path, entry: str, said: str) -> None:
    with pytest.raises(ConfigError, match=None) as refused:
        load_config(config(tmp_path, f"[[transmit.destinations]]\n{entry}\n"))
    assert said in str(refused.value)


def test_two_destinations_may_not_share_a_name(tmp_path: Path) -> None:
    twice = '[[transmit.destinations]]\nname = "A"\nto = "dimse:A@h:104"\n' * 2
    with pytest.raises(ConfigError, match="names must differ"):
        load_config(config(tmp_path, twice))

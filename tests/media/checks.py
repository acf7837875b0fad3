"""PDI media checked by the reference tools: dicom3tools, dcmtk and pydicom, each reading the folder itself.

`assert_pdi_valid(folder)` is what every test that makes media (the PDI writer, the HTTP zip
unpacked, `aperture download`) calls: it fails with the tools' own words. Each check is also
callable alone. Nothing is skipped: a missing tool is a failure that says which Debian package
to install.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from pydicom.fileset import FileSet

_COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")
_NON_DICOM = re.compile(r"^[A-Z0-9_]{1,8}(\.[A-Z0-9_]{1,3})?$")
_TOOLS = {"dciodvfy": "dicom3tools", "dcdirdmp": "dicom3tools", "dcmdump": "dcmtk", "dcmftest": "dcmtk",
          "dcmmkdir": "dcmtk"}  # fmt: skip


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed: apt-get install {_TOOLS[name]}"
    return path


def _run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool(command[0]), *command[1:]], capture_output=True, text=True, cwd=cwd, timeout=600)


def dciodvfy_errors(dicomdir: Path) -> list[str]:
    """dciodvfy's `Error` lines for a DICOMDIR (it must also name the IOD: `BasicDirectory`)."""
    result = _run("dciodvfy", str(dicomdir))
    output = result.stdout + result.stderr
    assert "BasicDirectory" in output, f"dciodvfy did not see a Basic Directory IOD:\n{output[:4000]}"
    return [line for line in output.splitlines() if line.startswith("Error")]


def dcdirdmp_tree(dicomdir: Path) -> list[str]:
    """dicom3tools' walk of the directory records by their offsets: the Referenced File IDs it reaches."""
    result = _run("dcdirdmp", str(dicomdir))
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "rror" not in output, f"dcdirdmp could not walk {dicomdir}:\n{output[:4000]}"
    return [line.strip()[3:].replace("\\", "/") for line in output.splitlines() if line.strip().startswith("->")]


def dcmdump_problems(dicomdir: Path) -> list[str]:
    """dcmtk's parse of the DICOMDIR: its `E:`/`W:` lines (none expected), and every record it shows."""
    result = _run("dcmdump", str(dicomdir))
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("E:", "W:"))]
    if result.returncode != 0:
        problems.append(f"dcmdump exited with {result.returncode}")
    if "MediaStorageDirectoryStorage" not in result.stdout:
        problems.append("dcmdump does not see Media Storage Directory Storage in the file meta")
    return problems


def dcmftest_failures(files: list[Path]) -> list[str]:
    """Files dcmtk does not recognise as PS3.10 (preamble, `DICM`, file meta)."""
    failures: list[str] = []
    for start in range(0, len(files), 200):
        result = _run("dcmftest", *(str(f) for f in files[start : start + 200]))
        failures += [line for line in result.stdout.splitlines() if not line.startswith("yes:")]
    return failures


def dcmmkdir_profile_errors(folder: Path, profile: str = "-Pgp") -> list[str]:
    """dcmtk's check of the referenced files against a media application profile (`-Pgp` is STD-GEN-CD).

    dcmmkdir builds a DICOMDIR of its own (into a temp folder, so the media is never touched) and
    says `E:` for each file the profile refuses; its exit code is 0 even then, so the lines are what
    counts. Type 1 keys are invented (`+I`) as Aperture invents them, in the record only.
    """
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "DICOMDIR"
        result = _run("dcmmkdir", profile, "+I", "-nb", "+r", "+id", str(folder), "+D", str(out), "DICOM")
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("E:")]


def pydicom_references(folder: Path) -> dict[str, Path]:
    """pydicom's FileSet loaded from the DICOMDIR: SOP Instance UID -> file, every file present and matching."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a referenced file missing is only a warning in pydicom: make it fail
        fs = FileSet(folder / "DICOMDIR")
    found: dict[str, Path] = {}
    for instance in fs:
        path = Path(instance.path)
        assert path.is_file(), f"the DICOMDIR references {instance.FileID}, which is not on the media"
        loaded = instance.load()
        assert loaded.SOPInstanceUID == instance.SOPInstanceUID, f"{instance.FileID} holds another instance"
        assert loaded.file_meta.TransferSyntaxUID == instance.TransferSyntaxUID, f"{instance.FileID}: syntax differs"
        found[str(instance.SOPInstanceUID)] = path
    return found


def layout_problems(folder: Path) -> list[str]:
    """PS3.12 / IHE PDI names: DICOM files 8-character components, no extension, at most 8 levels;
    nothing but DICOM files under `DICOM/`; other files ISO 9660 8.3."""
    problems: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if parts[0] == "DICOM":
            if len(parts) > 8 or not all(_COMPONENT.match(p) for p in parts):
                problems.append(f"{'/'.join(parts)}: not a PS3.12 File ID")
            elif path.read_bytes()[128:132] != b"DICM":
                problems.append(f"{'/'.join(parts)}: a non-DICOM file in the DICOM folder")
        elif not all(_NON_DICOM.match(p) for p in parts) and parts != ("DICOMDIR",):
            problems.append(f"{'/'.join(parts)}: not an ISO 9660 8.3 name")
    return problems


def web_problems(folder: Path) -> list[str]:
    """INDEX.HTM opens from the folder: every link and image it names is on the media, no script, no remote URL."""
    index = folder / "INDEX.HTM"
    if not index.exists():
        return []
    html = index.read_text(encoding="utf-8")
    problems = [f"INDEX.HTM links to {url}, which is not on the media"
                for url in re.findall(r'(?:src|href)="([^"#]+)"', html) if not (folder / url).is_file()]  # fmt: skip
    if "<script" in html.lower():
        problems.append("INDEX.HTM has a script")
    if re.search(r'(?:src|href)="(?:https?:)?//', html):
        problems.append("INDEX.HTM refers to a remote URL")
    return problems


def assert_pdi_valid(folder: Path) -> dict[str, Path]:
    """Everything above, on a PDI folder; returns SOP Instance UID -> file from the DICOMDIR (for byte checks)."""
    dicomdir = folder / "DICOMDIR"
    assert dicomdir.is_file(), f"no DICOMDIR at the root of {folder}"
    assert (folder / "README.TXT").is_file(), f"no README.TXT at the root of {folder} (IHE RAD TF-3 4.47)"
    errors = dciodvfy_errors(dicomdir)
    assert errors == [], "dciodvfy:\n" + "\n".join(errors)
    problems = dcmdump_problems(dicomdir)
    assert problems == [], "dcmdump:\n" + "\n".join(problems)
    references = pydicom_references(folder)
    walked = dcdirdmp_tree(dicomdir)
    expected = sorted(str(p.relative_to(folder).as_posix()) for p in references.values())
    assert sorted(walked) == expected, "dcdirdmp reaches other files than pydicom"
    failures = dcmftest_failures(list(references.values()))
    assert failures == [], "dcmftest:\n" + "\n".join(failures)
    on_media = sorted(p.relative_to(folder).as_posix() for p in (folder / "DICOM").rglob("*") if p.is_file())
    assert on_media == expected, f"files under DICOM/ without a record: {sorted(set(on_media) - set(expected))}"
    bad = layout_problems(folder) + web_problems(folder)
    assert bad == [], "\n".join(bad)
    return references

"""The layering the folder tree promises, checked: DICOM core without HTTP/SQL, scopes only from policy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "aperture"


def test_dicom_core_imports_no_http_and_no_sql() -> None:
    code = (
        "import sys, pkgutil, importlib, aperture.dicom as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('aperture.dicom.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'starlette', 'sqlalchemy', 'httpx', 'granian'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"aperture.dicom pulled in: {out}"


def test_only_the_policy_issues_access_scopes() -> None:
    users = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "_ISSUER" in path.read_text(encoding="utf-8")
    )
    assert users == ["auth/policy.py", "store/scope.py"]


def test_every_index_read_takes_an_access_scope() -> None:
    """Public methods of store.index.Index that read rows must have a `scope: AccessScope` parameter."""
    tree = ast.parse((PACKAGE / "store" / "index.py").read_text(encoding="utf-8"))
    (index_class,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Index"]
    unscoped = []
    for node in index_class.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            annotations = {a.arg: ast.unparse(a.annotation) for a in node.args.args if a.annotation is not None}
            if annotations.get("scope") != "AccessScope":
                unscoped.append(node.name)
    assert unscoped == []


def test_route_handlers_do_not_touch_sql_or_files_directly() -> None:
    for path in (PACKAGE / "dicomweb").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "sqlalchemy" not in source, f"{path.name} imports SQL; go through aperture.store"


def _imports(folder: Path) -> dict[str, set[str]]:
    """Every module name each file under `folder` imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in folder.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(PACKAGE))] = names
    return found


def test_imaging_fhir_and_ehr_fhir_do_not_import_each_other() -> None:
    """aperture.fhir (the imaging server's FHIR) and aperture.ehr (the EHR sandbox) stay separate products."""
    assert (PACKAGE / "fhir").is_dir()
    into_ehr = [
        f for f, names in _imports(PACKAGE / "fhir").items() if any(n.startswith("aperture.ehr") for n in names)
    ]
    imaging = ("aperture.fhir", "aperture.server", "aperture.dicomweb")
    into_imaging = [f for f, names in _imports(PACKAGE / "ehr").items() if any(n.startswith(imaging) for n in names)]
    assert into_ehr == [] and into_imaging == []


def test_imaging_fhir_touches_no_sql_or_files_directly() -> None:
    for path in (PACKAGE / "fhir").glob("*.py"):
        assert "sqlalchemy" not in path.read_text(encoding="utf-8"), (
            f"{path.name} imports SQL; go through aperture.store"
        )

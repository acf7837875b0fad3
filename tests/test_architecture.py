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


def _imported_by(package: str) -> set[str]:
    """Every module in sys.modules after importing all modules of `package` in a fresh interpreter.

    Alembic migration scripts are left out: they only run inside Alembic, with its context set up.
    """
    code = (
        f"import sys, pkgutil, importlib, {package} as p\n"
        f"for m in pkgutil.walk_packages(p.__path__, '{package}.'):\n"
        "    if '.migrations' not in m.name: importlib.import_module(m.name)\n"
        "print(','.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return set(out.split(","))


def test_the_ehr_sandbox_imports_nothing_of_the_imaging_server() -> None:
    """The sandbox plays a third-party EHR: it shares only config, logs and errors-free helpers with Aperture."""
    imaging = ("aperture.server", "aperture.dicomweb", "aperture.store", "aperture.dicom", "aperture.auth",
               "aperture.fhir", "aperture.viewer", "aperture.cli")  # fmt: skip
    bad = sorted(n for n in _imported_by("aperture.ehr") if n.startswith(imaging))
    assert bad == [], f"aperture.ehr pulled in: {bad}"


def test_the_store_imports_no_web_framework() -> None:
    bad = sorted(
        n for n in _imported_by("aperture.store") if n.split(".")[0] in {"starlette", "httpx", "granian", "authlib"}
    )
    assert bad == [], f"aperture.store pulled in: {bad}"


def test_the_audit_package_imports_no_web_framework_and_no_server() -> None:
    """The recorder runs beside the server, the CLI and the search without any of them: records in, rows out."""
    bad = sorted(
        n
        for n in _imported_by("aperture.audit")
        if n.split(".")[0] in {"starlette", "httpx", "granian", "authlib"}
        or n.startswith(("aperture.server", "aperture.dicomweb", "aperture.auth", "aperture.ehr"))
    )
    assert bad == [], f"aperture.audit pulled in: {bad}"


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


def test_handlers_reach_the_index_typed() -> None:
    """`app.state` is untyped: the index is read from it only where it gets its type (`dicomweb.state.index_of`,
    or a local annotated `Index`), so mypy checks every store read's AccessScope argument."""
    untyped = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() in {"server/app.py", "dicomweb/state.py"}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "state.index" in line and ": Index =" not in line:
                untyped.append(f"{path.relative_to(PACKAGE)}:{number}")
    assert untyped == []


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

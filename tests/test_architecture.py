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

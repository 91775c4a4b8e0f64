"""The documentation site builds without a warning, its API pages show what each package exports,
and the README's links into docs/ lead somewhere.

The build is `mkdocs build --strict` as a user runs it (a subprocess of this interpreter, into a
temporary folder); griffe reads the sources statically, so nothing is imported or compiled and
the whole module takes a few seconds. Skipped only where MkDocs is not installed (the `test`
extra installs it).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ecsfm"

# A stylesheet, script or image fetched from another host would make the site need a network.
REMOTE_ASSET = re.compile(r"<(?:script|link|img)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    # Strict mode aborts on warnings already; this also catches a warning logged in a way that
    # does not count towards the abort (e.g. by a plugin at the end of the build).
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert not warnings, "mkdocs build warned:\n" + "\n".join(warnings)
    return out


def _exported_names(package: str) -> list[str]:
    """``__all__`` of ``ecsfm.<package>``, read from its source without importing it."""
    init = SRC / package / "__init__.py"
    module = SRC / f"{package}.py"
    path = init if init.is_file() else module
    names: list[str] = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            names.extend(ast.literal_eval(node.value))
    return names


def _is_submodule(package: str, name: str) -> bool:
    return (SRC / package / f"{name}.py").is_file() or (SRC / package / name / "__init__.py").is_file()


def test_site_builds_strictly_and_needs_no_network(site):
    pages = sorted(site.rglob("*.html"))
    assert (site / "index.html").is_file() and (site / "api" / "sim" / "index.html").is_file()
    remote = [str(p.relative_to(site)) for p in pages if REMOTE_ASSET.search(p.read_text(encoding="utf-8"))]
    assert not remote, f"pages that load assets from another host: {remote}"


def test_api_pages_show_each_exported_name(site):
    built = sorted(p.parent.name for p in (site / "api").glob("*/index.html"))
    assert {"sim", "io", "data", "fm", "studies"} <= set(built), built
    missing = {}
    for package in built:
        html = (site / "api" / package / "index.html").read_text(encoding="utf-8")
        names = _exported_names(package)
        assert names, f"ecsfm.{package} has no literal __all__ for its API page to list"
        absent = [n for n in names if f'id="ecsfm.{package}.{n}"' not in html and not _is_submodule(package, n)]
        if absent:
            missing[package] = absent
    assert not missing, f"exported names absent from their API page: {missing}"


def test_readme_links_into_docs_resolve(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local, "the README links into docs/"
    broken = []
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        if not target.exists():
            broken.append(link)
            continue
        if anchor:
            # docs/<page>.md is built to <page>/index.html (docs/index.md to index.html); the
            # heading ids are the ones GitHub gives these headings too (plain words only).
            rel = target.relative_to(ROOT / "docs").with_suffix("")
            html = site / ("index.html" if rel.name == "index" else rel / "index.html")
            if f'id="{anchor}"' not in html.read_text(encoding="utf-8"):
                broken.append(link)
    assert not broken, f"README links that lead nowhere: {broken}"

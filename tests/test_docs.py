"""The documentation site: `mkdocs build --strict` passes (no broken link, no missing API page), every page is in
the navigation, every public name of ``segzoo`` has an API entry, and the README stays a short front page."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

import segzoo
from conftest import REPO

README_MAX_LINES = 300


def _nav_pages() -> list[str]:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    return [next(iter(item.values())) for item in config["nav"]]


def test_the_readme_is_a_short_front_page():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    links = set(re.findall(r"\]\((docs/[\w-]+\.md)\)", "\n".join(lines)))
    assert {f"docs/{page}" for page in _nav_pages() if page != "index.md"} <= links  # every page linked


def test_every_page_is_in_the_navigation():
    assert sorted(p.name for p in (REPO / "docs").glob("*.md")) == sorted(_nav_pages())


def test_mkdocs_builds_strict_and_documents_every_public_name(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    anchors = set(re.findall(r'id="(segzoo\.[\w.]+)"', api))
    missing = [name for name in segzoo.__all__ if name != "__version__"
               and not any(anchor.endswith(f".{name}") for anchor in anchors)]
    assert not missing, f"public names without an API entry in docs/api.md: {missing}"

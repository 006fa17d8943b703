"""The documentation: the site builds with --strict (links, anchors, nav), and the README's own links lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub writes it: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """mkdocs.yml turns every link, anchor and nav warning into a failure under --strict."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    # the repository's other READMEs are pages of the site, and a docs page's link to one of them leads there
    assert (tmp_path / "site" / "reference" / "scenarios" / "index.html").is_file()
    method = (tmp_path / "site" / "method" / "index.html").read_text(encoding="utf-8")
    assert 'href="../reference/scenarios/#conditions-over-time"' in method


def test_every_docs_page_is_in_the_nav() -> None:
    """A page left out of nav would be unreachable from the site's menu (the build refuses it too)."""
    nav = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted((REPO / "docs").glob("*.md")):
        assert f": {page.name}\n" in nav, page.name


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    headings = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for target in links:
        if target.startswith(("http:", "https:")):
            continue
        path, _, anchor = target.partition("#")
        if not path:
            assert anchor in headings, target
            continue
        assert (REPO / path).is_file(), target
        if anchor:
            page = (REPO / path).read_text(encoding="utf-8")
            assert anchor in {_slug(h) for h in re.findall(r"^#+ (.+)$", page, flags=re.M)}, target

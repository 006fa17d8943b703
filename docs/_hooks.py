"""MkDocs hooks: the repository's other READMEs become site pages; repository-relative links work on the site too."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

__all__ = ["EXTRA_PAGES", "on_files", "on_page_markdown"]

REPO = Path(__file__).resolve().parents[1]
DOCS = "docs"

# Repository files outside docs/ that the site shows as pages of their own: repository path -> site path.
# The pages are written for reading on a repository browser, so their links are repository-relative; the link
# rewriting below turns them into site links without a copy of the text (the files stay the one source).
EXTRA_PAGES = {
    "scenarios/README.md": "reference/scenarios.md",
    "device_profiles/README.md": "reference/device_profiles.md",
    "device_profiles/traces/README.md": "reference/traces.md",
}

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    for repo_path, site_path in EXTRA_PAGES.items():
        files.append(File.generated(config, site_path, abs_src_path=str(REPO / repo_path)))
    return files


def _repo_path(site_path: str) -> str:
    """Where a site page's text lives in the repository."""
    for repo_path, extra in EXTRA_PAGES.items():
        if extra == site_path:
            return repo_path
    return f"{DOCS}/{site_path}"


def _site_path(repo_path: str) -> str | None:
    """The site page of a repository file, None when the site does not hold it."""
    if repo_path in EXTRA_PAGES:
        return EXTRA_PAGES[repo_path]
    if repo_path.startswith(f"{DOCS}/"):
        return repo_path[len(DOCS) + 1 :]
    return None


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Rewrite each repository-relative link: to its site page when the site has one; to its bare text when it
    names a repository file (source code) that the site does not hold. Anything else is left for mkdocs to judge,
    so that a link to nothing still fails `mkdocs build --strict`."""
    here = posixpath.dirname(_repo_path(page.file.src_uri))
    site_here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        if target.startswith(("#", "http:", "https:", "mailto:")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = posixpath.normpath(posixpath.join(here, path))
        site = _site_path(repo_path)
        if site is not None:
            rel = posixpath.relpath(site, site_here or ".")
            return f"[{label}]({rel}{'#' + anchor if anchor else ''})"
        if (REPO / repo_path).is_file() and not repo_path.endswith(".md"):
            return label
        return match.group(0)

    return _LINK.sub(rewrite, markdown)

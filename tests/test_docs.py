"""No dead relative link in README.md or docs/: every Markdown link and image that is not a web
address points to a file or folder of the repository, and a `#anchor` into a Markdown file to
one of its headings (GitHub's slugs). Code blocks and inline code are not read as links."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
README_MAX_LINES = 250  # issue 14: a README a newcomer reads in five minutes

INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # http:, https:, mailto:, ...


def without_fences(text: str) -> str:
    """``text`` without its fenced code blocks."""
    out, fence = [], None
    for line in text.splitlines():
        marker = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if fence is None and marker:
            fence = marker[1]
        elif fence is not None:
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
        else:
            out.append(line)
    return "\n".join(out)


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", without_fences(text), flags=re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text lower-cased, Markdown markup and punctuation other
    than '-' and '_' dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in without_fences(path.read_text()).splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(text: str) -> list[str]:
    body = prose(text)
    return [*INLINE_LINK.findall(body), *REFERENCE_LINK.findall(body), *HTML_LINK.findall(body)]


def dead_links(path: Path) -> list[str]:
    """``target: reason`` for each relative link of ``path`` that leads nowhere."""
    problems = []
    for target in links(path.read_text()):
        if EXTERNAL.match(target):
            continue  # web addresses are not checked
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
            problems.append(f"{target}: {shown} does not exist")
        elif anchor and dest.suffix == ".md" and unquote(anchor).lower() not in anchors(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_no_dead_relative_links(path: Path) -> None:
    assert dead_links(path) == []


def test_docs_have_links_to_check() -> None:
    readme = links((ROOT / "README.md").read_text())
    for page in ("docs/datasets.md", "docs/split.md", "docs/models.md", "docs/metrics.md",
                 "docs/grid.md", "docs/cluster.md", "docs/troubleshooting.md"):
        assert page in readme, f"README does not link {page}"


def test_readme_is_short() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_the_check_finds_dead_links_and_anchors(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## `depth-grid run` options\n\n## Same\n\n## Same\n")
    (tmp_path / "pic.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok](other.md#depth-grid-run-options) [ok](other.md#same-1) ![ok](pic.png)\n"
        "[ok](#page) [web](https://example.com/missing.md) [ok] and <img src=\"pic.png\">\n\n"
        "[gone](missing.md) [bad anchor](other.md#nope) ![gone](figures/none.png) [self](#nowhere)\n"
        "<a href=\"gone.md\">x</a>\n\n"
        "[ok]: other.md\n[gone ref]: nothing.md\n\n"
        "`[code](not-a-link.md)`\n\n```markdown\n[fenced](not-a-link-either.md)\n# not a heading\n```\n")
    problems = dead_links(page)
    assert [p.split(":")[0] for p in problems] == [
        "missing.md", "other.md#nope", "figures/none.png", "#nowhere", "nothing.md", "gone.md"], problems
    assert "not a heading" not in " ".join(anchors(page))

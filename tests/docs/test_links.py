"""Every link of the documentation resolves: README.md, docs/*.md and CHANGELOG.md.

A relative link names a file or directory of the source tree, and its `#anchor` a heading of that page by
GitHub's rules. An absolute link goes to a documentation host only; none is fetched (no network).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]

DOC_HOSTS = {
    "docs.aws.amazon.com",  # AWS developer guides, API and CLI references
    "docs.python.org",
    "awslabs.github.io",  # awscrt's API docs
    "prometheus.io",
    "www.freedesktop.org",  # systemd's manual pages
    "man7.org",
    "manpages.debian.org",
    "mosquitto.org",
    "docs.github.com",
    "packaging.python.org",
    "peps.python.org",
    "keepachangelog.com",  # the changelog's format
    "semver.org",
}

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+[\"'(].*)?$")
AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
BARE = re.compile(r"(?<![(<\[\"'=])\bhttps?://[^\s)<>\]\"'`]+")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.target}"


def pages() -> List[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]
    return [page for page in found if page.exists()]


def prose_lines(text: str) -> Iterator[Tuple[int, str, str]]:
    """(line number, line, the line with its code spans blanked out) for each line outside fenced code."""
    fence = ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
            continue
        if match:
            fence = match.group(1)
            continue
        yield number, line, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)


def links(page: Path) -> List[Link]:
    out: List[Link] = []
    for number, _, line in prose_lines(page.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in INLINE.finditer(line)]
        targets += [m.group(1) for m in REFERENCE.finditer(line)]
        targets += [m.group(1) for m in AUTOLINK.finditer(line)]
        rest = AUTOLINK.sub(" ", INLINE.sub(" ", line))
        targets += [m.group(0).rstrip(".,;:") for m in BARE.finditer(rest)]
        out.extend(Link(page, number, target) for target in targets)
    return out


def github_slug(text: str) -> str:
    """GitHub's anchor of a heading: its text without markup, lowercased, punctuation other than - and _ dropped,
    each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    """Every anchor a page has: its headings' slugs (repeats get -1, -2, ...) and explicit HTML anchors."""
    seen: Counter[str] = Counter()
    out: Set[str] = set()
    lines = list(prose_lines(page.read_text(encoding="utf-8")))
    for index, (number, line, _) in enumerate(lines):
        out.update(HTML_ANCHOR.findall(line))
        text = None
        match = HEADING.match(line)
        if match:
            text = match.group(2)
        elif (index + 1 < len(lines) and lines[index + 1][0] == number + 1 and line.strip()
              and re.fullmatch(r"\s{0,3}(=+|-+)\s*", lines[index + 1][1])
              and not line.lstrip().startswith(("|", "-", "*", ">", "#"))):
            text = line.strip()  # a setext heading
        if text is None:
            continue
        slug = github_slug(text)
        out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def problem(link: Link, cache: Dict[Path, Set[str]], root: Path = ROOT) -> str:
    """Why ``link`` does not resolve within the source tree at ``root``, or ""."""
    parts = urlsplit(link.target)
    if parts.scheme in ("http", "https"):
        host = (parts.hostname or "").lower()
        return "" if host in DOC_HOSTS else f"absolute link to {host or link.target}, not a documentation host"
    if parts.scheme == "mailto":
        return ""
    if parts.scheme or link.target.startswith("//"):
        return f"link with scheme {parts.scheme or '//'}"
    path = unquote(parts.path)
    target = (link.page.parent / path).resolve() if path else link.page
    if path.startswith("/"):
        return "absolute path: write it relative to the page"
    if not target.exists():
        return f"{path} does not exist"
    if root not in target.parents and target != root:
        return f"{path} is outside the source tree"
    if parts.fragment:
        if target.suffix != ".md" or target.is_dir():
            return f"#{parts.fragment} on {path}, which is not a Markdown page"
        if target not in cache:
            cache[target] = anchors(target)
        if unquote(parts.fragment) not in cache[target]:
            return f"no heading with anchor #{parts.fragment} in {target.relative_to(root)}"
    return ""


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_resolves(page: Path) -> None:
    cache: Dict[Path, Set[str]] = {}
    broken = [f"{link}: {why}" for link in links(page) if (why := problem(link, cache))]
    assert not broken, "broken links:\n" + "\n".join(broken)


# The checker itself, on pages written for the purpose: it finds what it must, and only that.

SAMPLE = """\
# Title: the `one` *page*

## Sinks: the same round, with or without Device Defender
## Sinks: the same round, with or without Device Defender
## `shadow.name` (and more)

Setext heading
--------------

[ok](#title-the-one-page) [ok](#sinks-the-same-round-with-or-without-device-defender-1) [ok](#shadowname-and-more)
[ok](#setext-heading) [ok](other.md#other) [ok](other.md) [ok](https://docs.aws.amazon.com/iot/x.html#y)
[bad anchor](#sinks) [bad file](missing.md) [bad other anchor](other.md#nope) [bad host](https://example.com/x)
`[in code](missing-in-code.md)`

```
[in a fence](missing-in-fence.md) https://example.org
```
See https://evil.example.net/page for more.

[ref]: missing-ref.md
"""


def test_the_checker_finds_each_kind_of_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(SAMPLE)
    (tmp_path / "other.md").write_text("# Other\n")
    cache: Dict[Path, Set[str]] = {}
    found = {link.target: problem(link, cache, tmp_path) for link in links(page)}
    broken = {target for target, why in found.items() if why}
    assert broken == {"#sinks", "missing.md", "other.md#nope", "https://example.com/x",
                      "https://evil.example.net/page", "missing-ref.md"}
    assert "missing-in-code.md" not in found and "missing-in-fence.md" not in found
    assert found["#sinks-the-same-round-with-or-without-device-defender-1"] == ""

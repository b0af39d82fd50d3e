"""The front page stays short and every relative link in the documentation resolves, #anchors included."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

# [text](target) or ![alt](target), with an optional "title"; text may hold `code` but no brackets
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
COMMENT = re.compile(r"<!--.*?-->", re.S)


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "benchmarks" / "README.md",
             ROOT / "src" / "rewdistill" / "models" / "zoo" / "README.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    return files


HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http(s)://, mailto:, ...


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link outside code blocks, code spans and HTML comments."""
    out, in_fence = [], False
    text = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            out += [(n, target) for target in LINK.findall(CODE_SPAN.sub("", line))]
    return out


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target without #anchor) of every relative link to another file."""
    return [(n, t.split("#", 1)[0]) for n, t in links(text) if not EXTERNAL.match(t) and t.split("#", 1)[0]]


def anchor_links(text: str) -> list[tuple[int, str, str]]:
    """(line number, target file or "" for this one, anchor) of every relative link with an #anchor."""
    return [(n, *t.split("#", 1)) for n, t in links(text) if "#" in t and not EXTERNAL.match(t)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text; a repeated heading gets -1, -2, ... as on GitHub."""
    out, seen, in_fence = set(), {}, False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := HEADING.match(line)):
            s = slug(m.group(1))
            out.add(f"{s}-{seen[s]}" if s in seen else s)
            seen[s] = seen.get(s, 0) + 1
    return out


def test_the_documentation_files_exist():
    missing = [str(p.relative_to(ROOT)) for p in doc_files() if not p.is_file()]
    assert not missing, f"missing documentation files: {missing}"
    assert list((ROOT / "docs").glob("*.md")), "docs/ has no pages"


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path):
    broken = [f"{path.relative_to(ROOT)}:{n}: {target}" for n, target in relative_links(path.read_text("utf-8"))
              if not (path.parent / target).exists()]
    assert not broken, "links to paths that do not exist:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_anchors_resolve(path: Path):
    broken = []
    for n, target, anchor in anchor_links(path.read_text("utf-8")):
        page = path.parent / target if target else path
        if page.suffix == ".md" and page.is_file() and anchor not in anchors(page.read_text("utf-8")):
            broken.append(f"{path.relative_to(ROOT)}:{n}: {target}#{anchor}")
    assert not broken, "links to headings that do not exist (GitHub anchors):\n" + "\n".join(broken)


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_readme_links_every_docs_page():
    linked = {(ROOT / t).resolve() for _, t in relative_links((ROOT / "README.md").read_text("utf-8"))}
    pages = [ROOT / "benchmarks" / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    unlinked = [str(p.relative_to(ROOT)) for p in pages if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link: {unlinked}"


def test_the_link_parser():
    text = "\n".join([
        "[a](docs/x.md#part) ![img](pic.png) [web](https://example.com) [here](#top)",
        "`[not](a-link.md)` and [b](<sp.md> \"title\")",
        "```", "[in](fence.md)", "```",
        "<!-- [hidden](c.md) -->",
    ])
    assert relative_links(text) == [(1, "docs/x.md"), (1, "pic.png"), (2, "sp.md")]
    assert anchor_links(text) == [(1, "docs/x.md", "part"), (1, "", "top")]


def test_heading_anchors_as_github_writes_them():
    text = "\n".join([
        "# Results: 3 seeds, both tiny tasks", "## The ablation command: `rewdistill ablate`",
        "## GRPO ×8 — [gold](x.md) (oracle)", "## Results: 3 seeds, both tiny tasks", "```", "# not a heading", "```",
    ])
    assert anchors(text) == {"results-3-seeds-both-tiny-tasks", "the-ablation-command-rewdistill-ablate",
                             "grpo-8--gold-oracle", "results-3-seeds-both-tiny-tasks-1"}

"""The front page stays short and every relative link in the documentation resolves."""
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


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target without #anchor) of every relative link outside code blocks and code spans."""
    out, in_fence = [], False
    text = COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for target in LINK.findall(CODE_SPAN.sub("", line)):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http(s)://, mailto:, ... or an anchor in the same file
            target = target.split("#", 1)[0]
            if target:
                out.append((n, target))
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

"""Artifact I/O: JSON / JSONL written atomically (temporary file, then rename), or appended one row at a time to
an append-only JSONL file that a crash leaves readable (`append_jsonl`, `read_jsonl_prefix`)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows, *, ensure_ascii: bool = True) -> None:
    """One JSON object per line; `ensure_ascii=False` keeps non-ASCII text readable (files meant for people)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=ensure_ascii) + "\n")
    os.replace(tmp, path)


def append_jsonl(path: Path, rows) -> None:
    """Append rows to an append-only JSONL file and flush. A torn last line (a kill mid-write) is ended first,
    so that the new rows stay whole: readers skip the torn line and keep everything after it."""
    with open(path, "a+b") as f:
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write("".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_jsonl_prefix(path: Path) -> list[dict]:
    """The complete rows of an append-only JSONL file; a torn last line (a kill mid-write) is dropped."""
    if not Path(path).exists():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn: the writer died before finishing this line
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def append_text(path: Path, text: str) -> None:
    """Append text to a progress file and flush it to disk."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class MetricsLog:
    """Appends one JSON row per call to a JSONL file. It starts empty, or, when a stage resumes from the
    checkpoint of step `keep_until`, keeps the rows of steps <= keep_until (later rows are redone)."""

    def __init__(self, path: Path, keep_until: int | None = None):
        self.path = path
        kept = [] if keep_until is None else [r for r in read_jsonl_prefix(path) if r.get("step", 0) <= keep_until]
        write_jsonl(path, kept)

    def __call__(self, row: dict) -> None:
        append_jsonl(self.path, [row])

"""What a stage wrote, fingerprinted: sha256 and size of every file under its outputs, recorded in the manifest,
so that a skipped stage's outputs are checked before a later stage reads them (`rewdistill verify` too)."""
from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(run_dir: Path, names: list[str]) -> dict[str, dict]:
    """{relative path: {size, sha256}} of every file under `names` (files or directories) that exists; model cards
    (README.md inside a directory) are left out: the evaluate stage rewrites them with the results."""
    out: dict[str, dict] = {}
    for name in names:
        path = run_dir / name
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != "README.md") if path.is_dir() else \
            [path] if path.exists() else []
        for f in files:
            out[f.relative_to(run_dir).as_posix()] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
    return out


def problems(run_dir: Path, recorded: dict[str, dict]) -> list[str]:
    """What differs from the record, one phrase per file: missing, truncated/grown (size), changed (hash)."""
    out = []
    for rel, want in sorted(recorded.items()):
        path = run_dir / rel
        if not path.is_file():
            out.append(f"{rel} is missing")
        elif path.stat().st_size != want["size"]:
            out.append(f"{rel} has {path.stat().st_size} bytes, {want['size']} were written")
        elif sha256_file(path) != want["sha256"]:
            out.append(f"{rel} changed since it was written (sha256 differs)")
    return out

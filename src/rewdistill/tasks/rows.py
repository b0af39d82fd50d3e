"""Reading a task's rows from local JSONL / parquet or from the HF hub, with row-level error reports.

A bad row is reported as `FILE:LINE: what is wrong; what to do`. The policy decides what happens then:
`fail` raises `DataError` on the first bad row; `skip` drops the row and counts it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


class DataError(Exception):
    """A data file or row is unusable; the message names the file (and line) and what to do."""


@dataclass
class Row:
    data: dict
    where: str  # "path:line" (JSONL), "path:row N" (parquet) or "hub:<id>/<split> row N"


@dataclass
class BadRows:
    """Rows dropped under the `skip` policy: how many, and the first few messages."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, msg: str) -> None:
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(msg)


def read_rows(path: Path, policy: str = "fail", bad: BadRows | None = None) -> list[Row]:
    """Every row of a local .jsonl / .json (JSON lines) / .parquet file. A malformed or non-UTF-8 line is a
    DataError (`fail`) or dropped and counted in `bad` (`skip`)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; check task.path")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"{path}: reading parquet needs pyarrow; `pip install pyarrow` or convert "
                            "to JSONL") from None
        table = pq.read_table(path).to_pylist()
        return [Row(r, f"{path}:row {i + 1}") for i, r in enumerate(table)]
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                rows += parse_line(raw, path, n)
            except DataError as e:
                if policy == "fail":
                    raise DataError(f"{e} (or set task.bad_rows: skip to drop such rows)") from None
                (bad if bad is not None else BadRows()).add(str(e))
    return rows


def parse_line(raw: bytes, path: Path, n: int) -> list[Row]:
    """One JSONL line -> [Row] ([] when blank); DataError when it is not UTF-8 or not a JSON object."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}:{n}: not UTF-8 text; re-save the file as UTF-8") from None
    if not line.strip():
        return []
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{n}: malformed JSON ({e.msg}); fix or remove this line") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{n}: a row must be a JSON object, got {type(obj).__name__}")
    return [Row(obj, f"{path}:{n}")]


def hub_rows(repo: str, config: str | None, split: str) -> list[Row]:
    """Rows of a hub dataset split through `datasets` (an optional extra; needs the network or its cache)."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"loading {repo} from the hub needs `pip install datasets`; or set task.path to local "
                        "JSONL/parquet files with the same schema") from None
    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as e:  # network, missing split, auth: all are the user's to fix
        raise DataError(f"cannot load {repo} ({split}) from the hub: {str(e).splitlines()[0]}; "
                        "set task.path to local files instead") from None
    return [Row(dict(r), f"hub:{repo}/{split} row {i + 1}") for i, r in enumerate(ds)]


def require(row: Row, name: str, kind: type | tuple) -> object:
    """row.data[name], checked present and of type `kind`; a DataError naming the row otherwise."""
    if name not in row.data or row.data[name] is None:
        raise DataError(f"{row.where}: missing field {name!r}")
    value = row.data[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{row.where}: field {name!r} should be {want}, got {type(value).__name__}")
    return value


def parse_all(rows: list[Row], parse, policy: str, bad: BadRows) -> list:
    """parse(row) for every row; a DataError fails (`fail`) or is counted in `bad` (`skip`)."""
    out = []
    for row in rows:
        try:
            out.append(parse(row))
        except DataError as e:
            if policy == "fail":
                raise DataError(f"{e} (or set task.bad_rows: skip to drop such rows)") from None
            bad.add(str(e))
    return out


def find_split_file(root: Path, split: str) -> Path | None:
    """`root/<split>.jsonl` or `root/<split>.parquet` (or `root` itself when it is a file and split is None)."""
    for ext in (".jsonl", ".json", ".parquet"):
        p = root / f"{split}{ext}"
        if p.is_file():
            return p
    return None

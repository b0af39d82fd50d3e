"""Tasks read from files or the hub: GSM8K, MMLU-Pro and the user's own JSONL.

Splits. A directory `task.path` may hold `train`, `validation` and `test` files (.jsonl or .parquet).
Missing splits are carved, with the seed `task.data_seed`, from what exists, and never overlap:
without `validation`, `task.n_validation` rows are taken out of train; without `train` (MMLU-Pro ships
only `test`), the test file is split into test (`task.n_heldout` rows), validation and train. A single
file as `task.path` is split the same way. Gold answers live in the Example and are read only by
evaluation and diagnostics.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

from rewdistill.tasks.base import Example, Task
from rewdistill.tasks.rows import BadRows, DataError, Row, find_split_file, hub_rows, parse_all, read_rows

logger = logging.getLogger("rewdistill")
SPLITS = ("train", "validation", "test")


class FileTask(Task):
    """Loads splits once; subclasses give `parse(row) -> Example` (a DataError naming `row.where` for a bad row),
    `prompt` and `extract`."""

    hub: tuple[str, str | None] | None = None  # (repo, config) when the task has a hub home
    hub_splits: dict[str, str] = {}

    def __init__(self, path: str | None = None, data_seed: int = 0, n_validation: int = 200, n_heldout: int = 1000,
                 bad_rows: str = "fail", **opts):
        self.path, self.data_seed = path, data_seed
        self.n_validation, self.n_heldout, self.policy = n_validation, n_heldout, bad_rows
        self.opts = opts
        self.bad = BadRows()
        self._splits: dict[str, list[Example]] | None = None

    # -- splits -------------------------------------------------------------------------------------
    def _raw(self) -> dict[str, list[Row]]:
        """The splits that exist as files (or on the hub), unparsed."""
        if self.path is None:
            if self.hub is None:
                raise DataError(f"task {self.name} needs task.path (a JSONL/parquet file or a directory of them)")
            repo, config = self.hub
            return {s: hub_rows(repo, config, hs) for s, hs in self.hub_splits.items()}
        root = Path(self.path)
        if root.is_file():
            return {"all": read_rows(root, self.policy, self.bad)}
        if not root.is_dir():
            raise DataError(f"{root}: no such file or directory; check task.path")
        found = {s: find_split_file(root, s) for s in SPLITS}
        if not any(found.values()):
            raise DataError(f"{root}: no train/validation/test .jsonl or .parquet file in it; check task.path")
        return {s: read_rows(p, self.policy, self.bad) for s, p in found.items() if p is not None}

    def _load_all(self) -> dict[str, list[Example]]:
        raw = self._raw()
        parsed = {s: parse_all(rows, lambda r, s=s: self.parse(r), self.policy, self.bad) for s, rows in raw.items()}
        if self.bad.count:
            logger.warning(f"{self.name}: skipped {self.bad.count} bad rows (task.bad_rows: skip), "
                           f"e.g. {self.bad.examples[0]}")
        rng = random.Random(self.data_seed)
        if "all" in parsed:
            parsed = {"test": parsed.pop("all")}
        if "train" not in parsed:
            rows = parsed.pop("test")
            rng.shuffle(rows)
            parsed["test"], rest = rows[: self.n_heldout], rows[self.n_heldout:]
            if "validation" not in parsed:
                parsed["validation"], rest = rest[: self.n_validation], rest[self.n_validation:]
            parsed["train"] = rest
        if "validation" not in parsed:
            rows = list(parsed["train"])
            rng.shuffle(rows)
            parsed["validation"], parsed["train"] = rows[: self.n_validation], rows[self.n_validation:]
        parsed.setdefault("test", [])
        for s in SPLITS:
            if not parsed[s]:
                raise DataError(f"task {self.name}: the {s} split is empty; add rows or change "
                                "task.n_validation / task.n_heldout")
            seen: set[str] = set()
            for e in parsed[s]:  # ids must be unique per split: pseudo-labels and samples are keyed by them
                if e.qid in seen:
                    raise DataError(f"task {self.name}: question id {e.qid!r} appears twice in {s}; make ids unique")
                seen.add(e.qid)
        return parsed

    def load(self, split: str) -> list[Example]:
        if self._splits is None:
            self._splits = self._load_all()
        return self._splits[split]

    def parse(self, row: Row) -> Example:
        raise NotImplementedError


def row_id(row: Row, field: str | None = None) -> str:
    """A stable question id: the row's own id field when it has one, else where the row came from."""
    if field and row.data.get(field) is not None:
        return str(row.data[field])
    return row.where.rsplit("/", 1)[-1].replace(" ", "")


def check_choice(row: Row, options, answer) -> tuple[list[str], str]:
    """(option texts, answer letter) of a multiple-choice row; 1..10 options, the letter must exist."""
    from rewdistill.tasks.answers import LETTERS

    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise DataError(f"{row.where}: field 'options' should be a list of strings")
    if not 1 <= len(options) <= len(LETTERS):
        raise DataError(f"{row.where}: {len(options)} options; 1 to {len(LETTERS)} are supported")
    if isinstance(answer, int) and not isinstance(answer, bool):
        answer = LETTERS[answer] if 0 <= answer < len(options) else str(answer)
    letters = LETTERS[: len(options)]
    if not isinstance(answer, str) or answer.strip().upper() not in letters:
        raise DataError(f"{row.where}: answer {answer!r} is not one of the options {letters[0]}..{letters[-1]}")
    return options, answer.strip().upper()


def format_options(options: list[str]) -> str:
    from rewdistill.tasks.answers import LETTERS

    return "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))

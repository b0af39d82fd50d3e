"""Why question batching fails SFT: the batch order or the packing? Validation only.

    OMP_NUM_THREADS=1 python benchmarks/sft_order.py BASE_RUN OUT_DIR MODE [MODE ...]

MODE is one of
- random: the default (responses drawn independently into batches, one padded row each);
- question: `sft.batching question` (a question's responses together, packed rows sharing the prompt);
- grouped-padded: the same order as question, but one padded row per response (isolates the order);
- pairs-packed: at most 2 responses of a question together (a question's responses cut into pairs, the pairs
  shuffled), packed (a partial grouping: half the prompts computed per batch, more questions per batch);
- pairs-padded: the same order, one padded row per response.

Each mode fine-tunes the student on BASE_RUN's pseudo-labelled teacher responses (copied into OUT_DIR/<mode>) with
BASE_RUN's config, and is scored by its greedy accuracy on the validation split. One JSON line per mode goes to
OUT_DIR/sweep.jsonl in `sft_sweep.py`'s schema (the mode under `overrides`). A mode directory that already
holds a student_sft and a seconds.txt is only scored (its source.txt, if any, is recorded as `trained_by`).
The orders other than random and question exist only here: the script swaps `train.loop.grouped_shuffle` and
the packing flag of `train.sft.sft_loss` for its run.
"""
from __future__ import annotations

import argparse
import random
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_sweep import record, scored, trained  # noqa: E402

import rewdistill.train.loop as loop  # noqa: E402
import rewdistill.train.sft as sft_train  # noqa: E402
from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.stages import sft  # noqa: E402
from rewdistill.stages.common import Ctx  # noqa: E402

MODES = {  # mode -> (batch order, rows) as the JSON line's `overrides` say it
    "random": {"order": "random", "rows": "padded"},
    "question": {"order": "whole questions", "rows": "packed"},
    "grouped-padded": {"order": "whole questions", "rows": "padded"},
    "pairs-packed": {"order": "pairs from one question", "rows": "packed"},
    "pairs-padded": {"order": "pairs from one question", "rows": "padded"},
}


def pairs_shuffle(items: list, group_of, rng: random.Random, cap: int = 2) -> list:
    """Each group's items in a random order, cut into chunks of at most `cap`; the chunks shuffled."""
    groups: dict = {}
    for item in items:
        groups.setdefault(group_of(item), []).append(item)
    chunks = []
    for k in sorted(groups):  # a fixed order to shuffle, whatever order the items came in
        members = groups[k]
        rng.shuffle(members)
        chunks += [members[i : i + cap] for i in range(0, len(members), cap)]
    rng.shuffle(chunks)
    return [item for chunk in chunks for item in chunk]


def batching_of(mode: str) -> str:
    """The `sft.batching` a mode runs with: random keeps pairs independent; the other orders group by question."""
    return "random" if MODES[mode]["order"] == "random" else "question"


@contextmanager
def patched(mode: str):
    """Inside: `train.loop.grouped_shuffle` gives the mode's order, `train.sft.sft_loss` its rows; restored after."""
    shuffle, loss = loop.grouped_shuffle, sft_train.sft_loss

    def padded_loss(model, pairs, pad_id, device, accelerator=None, packed=False, weights=None, suffix=False):
        return loss(model, pairs, pad_id, device, accelerator, False, weights, suffix)

    if MODES[mode]["order"] == "pairs from one question":
        loop.grouped_shuffle = pairs_shuffle
    if MODES[mode]["rows"] == "padded":
        sft_train.sft_loss = padded_loss
    try:
        yield
    finally:
        loop.grouped_shuffle, sft_train.sft_loss = shuffle, loss


def train(mode: str, cfg, d: Path) -> None:
    """The sft stage in directory d, with the mode's order and rows (cfg from `batching_of(mode)`)."""
    with patched(mode):
        sft.run(Ctx(cfg, d, stage_hash="sft-order"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("modes", nargs="+", choices=list(MODES))
    args = ap.parse_args()
    for mode in args.modes:
        cfg = load_config(str(args.base / "config.yaml"), {"sft.batching": batching_of(mode)})
        d = args.out / mode
        trained(d, args.base, train, mode, cfg, d)
        record(args.out / "sweep.jsonl", scored(mode, MODES[mode], cfg, d, args.base))


if __name__ == "__main__":
    main()

"""Do two run directories hold the same results? For refactors that must not change a number.

    python benchmarks/same_run.py RUN_A RUN_B

Compares results.json (all but `seconds` and the diagnostics added after the issue-14 refactor), every sample and
metric file row by row and key by key (keys only in B are listed, not failed), pseudo_label_stats.json, and every
tensor of student_sft/, reward_model/ and student_rl/. Prints IDENTICAL and exits 0, or the first differences and 1.
"""
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

a, b = Path(sys.argv[1]), Path(sys.argv[2])
diffs = []
ra, rb = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
for r in (ra, rb):
    r.pop("seconds", None)
    r["diagnostics"].pop("ranking_student_sft", None)  # added after the refactor (issue 15); absent before
    r["diagnostics"].pop("rl_selection", None)
    r["diagnostics"].pop("selection_vs_gold_spearman", None)
if ra != rb:
    diffs.append(f"results.json differs: {ra} vs {rb}")
for name in ["questions.jsonl", "teacher_samples.jsonl", "labels.jsonl", "teacher_labelled.jsonl",
             "student_samples.jsonl", "eval_samples.jsonl", "sft_metrics.jsonl", "reward_model_metrics.jsonl",
             "rl_metrics.jsonl"]:
    ta, tb = (a / name).read_text().splitlines(), (b / name).read_text().splitlines()
    if len(ta) != len(tb):
        diffs.append(f"{name}: {len(ta)} vs {len(tb)} rows")
        continue
    added = set()
    for i, (x, y) in enumerate(zip(ta, tb)):
        x, y = json.loads(x), json.loads(y)
        common = set(x) & set(y)
        added |= set(y) - set(x)
        if set(x) - set(y):
            diffs.append(f"{name} row {i}: keys lost {set(x) - set(y)}")
        for k in common:
            if x[k] != y[k] and not (isinstance(x[k], float) and x[k] != x[k] and y[k] != y[k]):
                diffs.append(f"{name} row {i} key {k}: {x[k]} vs {y[k]}")
    if added:
        print(f"{name}: keys added after: {sorted(added)}")
if json.loads((a / "pseudo_label_stats.json").read_text()) != json.loads((b / "pseudo_label_stats.json").read_text()):
    diffs.append("pseudo_label_stats.json differs")
for m in ["student_sft", "reward_model", "student_rl"]:
    ta, tb = load_file(str(a / m / "model.safetensors")), load_file(str(b / m / "model.safetensors"))
    if ta.keys() != tb.keys() or any(not (ta[k] == tb[k]).all() for k in ta):
        diffs.append(f"{m}/model.safetensors: tensors differ")
SAME = ("IDENTICAL (results.json but seconds; every sample and metric row, key by key; every tensor of student_sft, "
        "reward_model, student_rl)")
print("\n".join(diffs[:20]) if diffs else SAME)
sys.exit(1 if diffs else 0)

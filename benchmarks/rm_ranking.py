"""Which reward model ranks the SFT student's own answers? The leading indicator of RL, on validation.

    python benchmarks/rm_ranking.py RUN_DIR [--rm DIR ...] [--task tiny-arith] [--k 8] [--out results.json]

The SFT student of RUN_DIR samples K answers at T = 1 to every validation question (cached in
RUN_DIR/val_samples_k<K>.jsonl, so that every reward model is compared on the same answers). Each is scored by
every reward model given (default: RUN_DIR/reward_model, either kind), by the teacher's mean token log-prob and by
the student's own; `diagnostics.ranking` gives best-of-K, majority vote, pass@K and the AUC within a question.
Prints a table and writes the JSON (with the commit measured and the teacher).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, teacher_of  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.diagnostics import ranking  # noqa: E402
from rewdistill.io import read_jsonl, write_jsonl  # noqa: E402
from rewdistill.models.forward import continuation_logprobs  # noqa: E402
from rewdistill.models.load import load_causal_lm, load_prompt_format, resolve  # noqa: E402
from rewdistill.models.reward import load_reward, score_pairs  # noqa: E402
from rewdistill.sampling.hf import generate  # noqa: E402
from rewdistill.tasks import get_task  # noqa: E402


def samples(run: Path, task, val, k: int) -> list[dict]:
    """K answers per validation question from the run's SFT student (T = 1), cached in the run directory."""
    path = run / f"val_samples_k{k}.jsonl"
    if path.exists():
        return read_jsonl(path)
    fmt = load_prompt_format(str(run / "student_sft"))
    policy = load_causal_lm(str(run / "student_sft")).eval()
    gens = generate(policy, fmt, [task.prompt(e) for e in val], 1.0, k, 64, 400, seed=5)
    rows = [{"i": g.prompt_index, "text": g.text} for g in gens]
    write_jsonl(path, rows)
    return rows


def mean_logprob(model_path: str, prompts: list[str], rows: list[dict]) -> list[float]:
    fmt = load_prompt_format(model_path)
    lm = load_causal_lm(model_path).eval()
    pairs = [fmt.pair_ids(prompts[r["i"]], r["text"]) for r in rows]
    lps = continuation_logprobs(lm, [p for p, _ in pairs], [r for _, r in pairs], fmt.pad_id)
    return [sum(lp) / len(lp) for lp in lps]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--rm", nargs="*", default=None, help="reward-model directories, each as DIR or LABEL=DIR "
                    "(default: RUN/reward_model)")
    ap.add_argument("--task", default=None, help="default: the run's task")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="default: RUN/rm_ranking.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(str(args.run / "config.yaml"), {})
    task = get_task(args.task or cfg.task.name)
    val = task.load("validation")
    prompts = [task.prompt(e) for e in val]
    rows = samples(args.run, task, val, args.k)
    signals: dict[str, list[float]] = {}
    for arg in args.rm if args.rm is not None else [str(args.run / "reward_model")]:
        name, _, d = arg.rpartition("=")
        fmt = load_prompt_format(d)
        pairs = [fmt.pair_ids(prompts[r["i"]], r["text"]) for r in rows]
        signals[name or f"reward model {d}"] = score_pairs(load_reward(d).eval(), pairs, fmt.pad_id)
    signals["teacher mean log-prob"] = mean_logprob(resolve(cfg.models.teacher), prompts, rows)
    signals["student mean log-prob"] = mean_logprob(str(args.run / "student_sft"), prompts, rows)
    out = {"run": str(args.run), "task": args.task or cfg.task.name, "split": "validation", "k": args.k,
           "temperature": 1.0,
           "commit": git_commit(), "teacher": teacher_of(args.run), "signals": {}}
    for name, scores in signals.items():
        groups: list[list] = [[] for _ in val]
        for r, s in zip(rows, scores):
            groups[r["i"]].append((s, r["text"]))
        out["signals"][name] = ranking(task, val, groups)
    first = next(iter(out["signals"].values()))
    print(f"{out['task']}: sample mean {first['sample_mean']:.3f}  maj@{args.k} {first['maj_at_k']:.3f}  "
          f"pass@{args.k} {first['pass_at_k']:.3f}")
    for name, r in out["signals"].items():
        print(f"  {name:60s} best-of-{args.k} {r['rm_best_of_k']:.3f}  AUC within {r['rm_auc_within']:.3f}")
    path = args.out or args.run / "rm_ranking.json"
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

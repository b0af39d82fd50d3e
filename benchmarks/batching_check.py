"""Does a speed change of a training stage keep results? Validation only. By default the change is question
batching (`sft.batching` / `reward_model.batching` question); `--set KEY=VALUE` names another (`--set sft.compile=on`).

    python benchmarks/batching_check.py --stage sft|reward-model BASE_RUN [BASE_RUN ...] --work DIR --out OUT.json
        [--set KEY=VALUE ...]

Each BASE_RUN is a finished run without the change (one per seed, e.g. the `rm` variant of each seed of an
ablation). Its stage is trained again on the same inputs (copied into DIR) with the change, and both
are scored on the validation split: the SFT student's greedy accuracy (sft), or the reward model's ranking of
the base SFT student's 8 answers per question, best-of-8 and AUC within a question (reward-model, the answers of
`benchmarks/rm_ranking.py`, cached in BASE_RUN). The JSON holds every seed, the mean and std of each, and whether
the mean moved by less than one seed-std of the runs without it (the acceptance of the speed issue). Rows name the
two sides by `labels` (default random / question).
Run it with the thread count the base runs were trained with (OMP_NUM_THREADS): training depends on it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import git_commit, teacher_of  # noqa: E402
from rm_ranking import samples  # noqa: E402

from rewdistill.config_files import load_config  # noqa: E402
from rewdistill.diagnostics import ranking  # noqa: E402
from rewdistill.models.load import load_causal_lm, load_prompt_format  # noqa: E402
from rewdistill.models.reward import load_reward, score_pairs  # noqa: E402
from rewdistill.sampling.hf import generate  # noqa: E402
from rewdistill.stages import reward_model, sft  # noqa: E402
from rewdistill.stages.common import Ctx  # noqa: E402
from rewdistill.tasks import get_task  # noqa: E402

INPUTS = {"sft": ["questions.jsonl", "teacher_labelled.jsonl"],
          "reward-model": ["questions.jsonl", "teacher_labelled.jsonl", "student_samples.jsonl", "student_sft"]}


def greedy_accuracy(model_dir: Path, task, val) -> float:
    fmt = load_prompt_format(str(model_dir))
    policy = load_causal_lm(str(model_dir)).eval()
    gens = generate(policy, fmt, [task.prompt(e) for e in val], 0.0, 1, 64, 400, seed=0)
    return sum(task.is_correct(g.text, val[g.prompt_index]) for g in gens) / len(val)


def rm_ranking(rm_dir: Path, base: Path, task, val) -> dict:
    rows = samples(base, task, val, 8)
    fmt = load_prompt_format(str(rm_dir))
    prompts = [task.prompt(e) for e in val]
    scores = score_pairs(load_reward(str(rm_dir)).eval(), [fmt.pair_ids(prompts[r["i"]], r["text"]) for r in rows],
                         fmt.pad_id)
    groups: list[list] = [[] for _ in val]
    for r, s in zip(rows, scores):
        groups[r["i"]].append((s, r["text"]))
    out = ranking(task, val, groups)
    return {"best_of_8": out["rm_best_of_k"], "auc_within": out["rm_auc_within"]}


def summary(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=list(INPUTS), required=True)
    ap.add_argument("bases", type=Path, nargs="+")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="the change (default: batching)")
    ap.add_argument("--labels", nargs=2, default=["random", "question"], help="names of the two sides in the JSON")
    args = ap.parse_args()
    section = "sft" if args.stage == "sft" else "reward_model"
    change = dict(kv.split("=", 1) for kv in args.set) or {f"{section}.batching": "question"}
    before, after = args.labels
    rows = []
    for base in args.bases:
        cfg = load_config(str(base / "config.yaml"), change)
        task = get_task(cfg.task.name)
        val = task.load("validation")
        work = args.work / f"{cfg.task.name}_seed{cfg.seed}_{args.stage}_{after}"
        if not (work / ("student_sft" if args.stage == "sft" else "reward_model")).exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            for name in INPUTS[args.stage]:
                (shutil.copytree if (base / name).is_dir() else shutil.copy2)(base / name, work / name)
            t0 = time.time()
            (sft if args.stage == "sft" else reward_model).run(Ctx(cfg, work, stage_hash="batching-check"))
            (work / "seconds.txt").write_text(f"{time.time() - t0:.1f}\n")
        row = {"seed": cfg.seed, "base": str(base), "work": str(work),
               f"seconds_{after}": float((work / "seconds.txt").read_text())}
        if args.stage == "sft":
            row[f"val_greedy_{before}"] = greedy_accuracy(base / "student_sft", task, val)
            row[f"val_greedy_{after}"] = greedy_accuracy(work / "student_sft", task, val)
        else:
            for mode, d in [(before, base / "reward_model"), (after, work / "reward_model")]:
                for k, v in rm_ranking(d, base, task, val).items():
                    row[f"{k}_{mode}"] = v
        print(json.dumps(row), flush=True)
        rows.append(row)
    metrics = ["val_greedy"] if args.stage == "sft" else ["best_of_8", "auc_within"]
    result = {"date": time.strftime("%Y-%m-%d"), "stage": args.stage,
              "task": rows[0]["work"].split("/")[-1].split("_seed")[0], "split": "validation",
              "change": change, "labels": [before, after],
              "seeds": [r["seed"] for r in rows], "commit": git_commit(), "teacher": teacher_of(args.bases[0]),
              "rows": rows, "summary": {}}
    for m in metrics:
        old, new = summary([r[f"{m}_{before}"] for r in rows]), summary([r[f"{m}_{after}"] for r in rows])
        result["summary"][m] = {before: old, after: new,
                                "within_one_seed_std": abs(new["mean"] - old["mean"]) <= old["std"]}
    print(json.dumps(result["summary"], indent=1))
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

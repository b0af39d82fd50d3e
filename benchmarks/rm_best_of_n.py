"""Can the reward model rank the student's own responses? Best-of-K by reward model vs. other pickers.

    python benchmarks/rm_best_of_n.py RUN_DIR [--task tiny-arith] [--k 8] [--temperature 1.0]

The SFT student of RUN_DIR samples K responses per *validation* question; prints and writes
RUN_DIR/rm_best_of_n.json: greedy accuracy, mean sampled accuracy, accuracy of the response the reward
model scores highest, majority vote, pass@K, and the reward model's AUC on these responses (over all of them,
and within a question: `diagnostics.ranking`). A reward
model that RL can climb must at least pick better than a random sample (best-of-K > sample mean).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rewdistill.diagnostics import ranking
from rewdistill.models.forward import score_sequences
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model
from rewdistill.sampling.hf import generate
from rewdistill.tasks import get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--task", default="tiny-arith")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    task = get_task(args.task)
    val = task.load("validation")
    tok = load_prompt_format(str(args.run / "student_sft"))
    policy = load_causal_lm(str(args.run / "student_sft")).eval()
    rm_tok = load_prompt_format(str(args.run / "reward_model"))
    rm = load_reward_model(str(args.run / "reward_model")).eval()
    prompts = [task.prompt(e) for e in val]
    gens = generate(policy, tok, prompts, args.temperature, args.k, 64, 400, seed=5)
    greedy = generate(policy, tok, prompts, 0.0, 1, 64, 400)
    seqs = [p + r for p, r in (rm_tok.pair_ids(prompts[g.prompt_index], g.text) for g in gens)]
    scores = score_sequences(rm, seqs, rm_tok.pad_id)
    groups: list[list] = [[] for _ in val]
    for g, s in zip(gens, scores):
        groups[g.prompt_index].append((s, g.text))
    out = {"run": str(args.run), "task": args.task, "split": "validation", "temperature": args.temperature,
           "greedy": sum(task.is_correct(g.text, e) for g, e in zip(greedy, val)) / len(val),
           **ranking(task, val, groups)}
    print(json.dumps(out, indent=1))
    (args.run / "rm_best_of_n.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

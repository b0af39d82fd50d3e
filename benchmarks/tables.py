"""Every results table in the docs, written from the JSON under benchmarks/results/.

    python benchmarks/tables.py           # rewrite every generated region in place
    python benchmarks/tables.py --check   # exit 1, naming each doc and table that differs from what it would write

A doc marks a generated region with `<!-- table:NAME -->` ... `<!-- /table -->`. TABLES maps NAME to a function
`(link) -> markdown`, where `link(path)` is the path of a results file relative to that doc. To add a table: one
TABLES entry (often a `partial` of a function below, e.g. `ablation_report` for a new `rewdistill ablate` JSON) and
the two markers in a doc. Every caption names the teacher and the commit measured as the JSON records them, and
says "commit unknown" where the JSON does. Nothing here computes a new statistic beyond means and differences.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ZOO = ROOT / "src" / "rewdistill" / "models" / "zoo"
DOCS = ["README.md", "docs/experiments.md", "docs/rl.md", "benchmarks/README.md", "src/rewdistill/models/zoo/README.md"]
REGION = re.compile(r"(<!-- table:([\w.-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


# ---- reading and formatting, shared by every table

def path_of(name: str | Path) -> Path:
    """A results file by name (benchmarks/results/NAME) or a path relative to the repository."""
    return RESULTS / name if isinstance(name, str) else ROOT / name


def load(name: str | Path):
    """A results file: its JSON object, or the list of rows of a .jsonl."""
    text = path_of(name).read_text("utf-8")
    if path_of(name).suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def field(d: dict | list, key: str) -> str | None:
    """A provenance field (teacher, commit, date) of a JSON, or its rows' distinct values joined."""
    values = [r.get(key) for r in d] if isinstance(d, list) else [d.get(key)]
    values = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    return " / ".join(values) or None


def commit(d: dict | list) -> str:
    """`commit abc1234` (the first word of what the JSON records) or `commit unknown`."""
    c = field(d, "commit")
    return "commit unknown" if c in (None, "unknown") else "commit " + " / ".join(f"`{x.split()[0]}`" for x in
                                                                                 c.split(" / "))


def source(name: str | Path, link, what: str = "") -> str:
    """'[`file`](link): what, teacher ..., commit ..., date' for a caption."""
    d = load(name)
    parts = [what] if what else []
    if field(d, "teacher"):
        parts.append(f"teacher `{field(d, 'teacher')}`")
    parts.append(commit(d))
    if field(d, "date"):
        parts.append(field(d, "date"))
    return f"[`{path_of(name).name}`]({link(name)}): " + ", ".join(parts)


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pts(x: float) -> str:
    """A difference in percentage points, signed."""
    return f"{100 * x:+.1f}"


def minutes(s: float) -> str:
    m, s = divmod(round(s), 60)
    return f"{m} min {s:02d} s"


def table(header: list[str], rows: list[list[str]], right_from: int = 1) -> str:
    """A markdown table; columns from `right_from` on are right-aligned."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in [header, align, *rows])


def bullets(lines: list[str]) -> str:
    return "\n".join(f"- {x}" for x in lines)


# ---- `rewdistill ablate` JSON (benchmarks/ablation.py): any number of tasks, one JSON each

LABELS = {  # variant -> row label, in the order the tables list them
    "sft_only": "SFT only (data distillation)",
    "sft_matched": "SFT only, more epochs instead of RL (compute-matched)",
    "rm": "**ours**: RL on the distilled reward model (the defaults at the commit measured)",
    "rm_scalar": "RL on the paper's scalar-head reward model",
    "rm_teacher_only": "reward model on teacher responses only",
    "teacher_judge": "teacher-judge reward (the teacher's mean log-prob)",
    "pseudo_label": "RL on the pseudo-label rule",
    "hybrid": "reward model ± pseudo-label",
    "teacher_kl": "on-policy distillation (teacher per-token KL)",
    "rm_teacher_kl": "**hybrid**: distilled reward model + teacher per-token KL",
    "gold": "*oracle*: RL on gold answers",
}


def label(v: str) -> str:
    return f"{LABELS.get(v, v)} (`{v}`)"


def variants(abl: list[dict]) -> list[str]:
    names = list(dict.fromkeys(v for a in abl for v in a["variants"]))
    return sorted(names, key=lambda v: list(LABELS).index(v) if v in LABELS else len(LABELS))


def ablation_caption(paths: list[str], link) -> str:
    lines = []
    for p in paths:
        d = load(p)
        a = d["ablation"]
        cmd = re.sub(r" --(run-dir|out) \S+", "", d["command"])
        seeds = ", ".join(map(str, a["seeds"]))
        note = f"; {d['note']}" if d.get("note") else ""
        lines.append(f"{a['task']}: " + source(p, link, f"seeds {seeds}, {a['split']} split") + f"; `{cmd}`{note}")
    return bullets(lines)


def ablation_means(paths: list[str], link) -> str:
    """Mean ± std over seeds per task, and each variant's difference to SFT-only in points."""
    abl = [load(p)["ablation"] for p in paths]
    rows = [["Teacher, greedy", *(f"{pct(a['teacher_greedy']['mean'])} ± {pct(a['teacher_greedy']['std'])}"
                                   for a in abl)],
            ["Teacher, majority vote (maj@K)", *(f"{pct(a['teacher_maj_at_k']['mean'])} ± "
                                                 f"{pct(a['teacher_maj_at_k']['std'])}" for a in abl)]]
    for v in variants(abl):
        cells = []
        for a in abl:
            d = a["variants"].get(v)
            diff = "" if v == "sft_only" or d is None else f" ({pts(d['mean'] - a['variants']['sft_only']['mean'])})"
            cells.append("–" if d is None else f"{pct(d['mean'])} ± {pct(d['std'])}{diff}")
        rows.append([label(v), *cells])
    header = ["Greedy accuracy (%), mean ± std over seeds (points over SFT only)", *(a["task"] for a in abl)]
    return ablation_caption(paths, link) + "\n\n" + table(header, rows)


def ablation_report(paths: list[str], link) -> str:
    """Per-seed accuracies, paired differences to SFT-only with their 95% intervals, and RL cost."""
    abl = [load(p)["ablation"] for p in paths]
    tasks = [a["task"] for a in abl]
    cell = lambda d: f"{pct(d['mean'])} ± {pct(d['std'])} ({' / '.join(pct(x) for x in d['per_seed'])})"  # noqa: E731
    rows = [["Teacher, greedy", *(cell(a["teacher_greedy"]) for a in abl)],
            ["Teacher, majority vote (maj@K)", *(cell(a["teacher_maj_at_k"]) for a in abl)]]
    rows += [[label(v), *(cell(a["variants"][v]) if v in a["variants"] else "–" for a in abl)] for v in variants(abl)]
    out = [ablation_caption(paths, link), "Greedy accuracy (%), mean ± std over seeds (per seed):",
           table(["Variant", *tasks], rows)]
    if all("paired_vs_sft_only" in a for a in abl):
        out += paired_differences(abl)
    if all("rl_cost" in a for a in abl):
        out += rl_costs(abl)
    return "\n\n".join(out)


def ablation_ranking(paths: list[str], link) -> str:
    """Per seed: the SFT student's K test samples per question ranked by the `rm` run's reward model and by the
    teacher's likelihood (best-of-K, AUC within a question), beside the student's greedy, sample mean and vote."""
    rows = []
    for p in paths:
        d = load(p)
        a = d["ablation"]
        for r, sft in zip(d["ranking_test"], a["variants"]["sft_only"]["per_seed"]):
            rm, te = r["ranking_student_sft"], r["ranking_student_sft_teacher_likelihood"]
            rows.append([a["task"], r["seed"], pct(sft), pct(rm["sample_mean"]), pct(rm["maj_at_k"]),
                         f"{pct(rm['rm_best_of_k'])} / {rm['rm_auc_within']:.2f}",
                         f"{pct(te['rm_best_of_k'])} / {te['rm_auc_within']:.2f}", pct(rm["pass_at_k"])])
    k = load(paths[0])["ranking_test"][0]["ranking_student_sft"]["k"]
    caption = bullets([f"{load(p)['ablation']['task']}: " + source(p, link, "each seed's `rm` run, test split")
                       for p in paths])
    return caption + "\n\n" + table(["task", "seed", "SFT student greedy (%)", f"random one of {k} (%)",
                                      f"majority of {k} (%)", "reward model's pick (%) / AUC within",
                                      "teacher likelihood's pick (%) / AUC within", f"pass@{k} (%)"], rows,
                                     right_from=1)


def paired_differences(abl: list[dict]) -> list[str]:
    fmt = lambda p: f"{pts(p['diff'])} [{pts(p['lo'])}, {pts(p['hi'])}]"  # noqa: E731
    names = variants([{"variants": a["paired_vs_sft_only"]} for a in abl])
    rows = [[label(v), *(" / ".join(map(fmt, a["paired_vs_sft_only"].get(v, []))) or "–" for a in abl)]
            for v in names]
    sizes = sorted({p["n"] for a in abl for per in a["paired_vs_sft_only"].values() for p in per})
    excluding = [f"{a['task']} `{v}` seed {s}: {fmt(p)}" for a in abl for v, per in a["paired_vs_sft_only"].items()
                 for s, p in zip(a["seeds"], per) if p["lo"] > 0 or p["hi"] < 0]
    return [f"Paired difference to SFT-only on the same {', '.join(map(str, sizes))} questions (points), per seed, "
            "with its 95% bootstrap interval over questions:",
            table(["Variant", *(a["task"] for a in abl)], rows, right_from=99),
            ("Intervals that exclude 0: " + "; ".join(excluding) + ".") if excluding
            else "No paired interval excludes 0."]


def rl_costs(abl: list[dict]) -> list[str]:
    rows = [[a["task"], f"`{v}`", f"{c['rl_seconds']:.0f}", f"{c['rollout_tokens']:,.0f}",
             f"{c['teacher_tokens']:,.0f}",
             f"{c['teacher_tokens'] / c['rollout_tokens']:.1f}" if c["rollout_tokens"] else "– (no RL)"]
            for a in abl for v, c in a["rl_cost"].items()]
    return ["RL cost per run (mean over seeds, all rounds):",
            table(["Task", "Variant", "RL wall time (s)", "Student rollout tokens", "Teacher-scored tokens",
                   "Teacher-scored per rollout token"], rows, right_from=2)]


def ablation_history(paths: list[str], link) -> str:
    """One row per ablation JSON: SFT-only, ours, and the gain per seed."""
    rows = []
    for p in paths:
        d = load(p)
        a = d["ablation"]
        sft, rm = a["variants"]["sft_only"], a["variants"]["rm"]
        gains = " / ".join(pts(r - s) for r, s in zip(rm["per_seed"], sft["per_seed"]))
        rows.append([f"[`{p}`]({link(p)})", a["task"], f"`{field(d, 'teacher')}`", commit(d), pct(sft["mean"]),
                     pct(rm["mean"]), f"{pts(rm['mean'] - sft['mean'])} ({gains})"])
    return table(["JSON", "task", "teacher", "measured at", "SFT only (%)", "ours, `rm` (%)",
                  "gain, points (per seed)"], rows, right_from=4)


# ---- single runs: default runs and pipeline wall time

def default_runs(paths: list[str], link) -> str:
    rows = []
    for p in paths:
        r = load(p)["results"]
        acc, k = r["accuracy"], r["maj_k"]
        rows.append([r["task"], pct(acc["teacher_greedy"]), f"{pct(acc['teacher_maj_at_k'])} (maj@{k})",
                     pct(acc["student_sft"]), pct(acc["student_rl"]), pts(acc["student_rl"] - acc["student_sft"])])
    caption = bullets([source(p, link, f"seed {load(p)['results']['seed']}, {load(p)['results']['split']} split")
                       for p in paths])
    return caption + "\n\n" + table(["task", "teacher greedy (%)", "teacher vote (%)", "SFT student (%)",
                                     "RL student (%)", "RL − SFT (points)"], rows)


def task_of(d: dict) -> str:
    m = re.search(r"--task (\S+)", d.get("command", "")) or re.search(r"tiny-\w+", d.get("what", ""))
    return m.group(1) if m and m.groups() else (m.group(0) if m else "tiny-arith")


def one_run(p: str) -> dict:
    """A default-run JSON (`pipeline_time.py`), or one run of a side-by-side JSON: `FILE#base` / `FILE#new`."""
    name, _, part = p.partition("#")
    d = load(name)
    return {**d, "command": f"--task {d['task']}", **d[part]} if part else d


def pipeline_times(paths: list[str], link) -> str:
    """Wall time per stage of single default runs, one column per JSON (or per run of a side-by-side JSON)."""
    runs = [one_run(p) for p in paths]
    stages = list(dict.fromkeys(s for d in runs for s in d["stage_seconds"]))
    rows = [["task", *(task_of(d) for d in runs)],
            ["teacher", *(f"`{d.get('teacher', 'not recorded')}`" for d in runs)],
            ["measured at", *(commit(d) for d in runs)], ["date", *(d["date"] for d in runs)]]
    rows += [[f"{s} (s)", *(f"{d['stage_seconds'][s]:.0f}" if s in d["stage_seconds"] else "–" for d in runs)]
             for s in stages]
    rows += [["**total wall**", *(f"**{d['wall_seconds']:.0f} ({minutes(d['wall_seconds'])})**" for d in runs)],
             ["test accuracy SFT → RL (%)", *(f"{pct(d['accuracy']['student_sft'])} → "
                                              f"{pct(d['accuracy']['student_rl'])}" for d in runs)]]
    return table(["", *(f"[`{p}`]({link(p.partition('#')[0])})" for p in paths)], rows, right_from=1)


# ---- benchmarks: sampling engines, one RL step

def sampling_table(name: str, link) -> str:
    d = load(name)
    m = d["machine"]
    where = f"{d['device']}, {m.get('gpu') or str(m['cpus']) + ' CPUs'}, torch {m['torch']}, {d['torch_threads']} " \
            f"threads, median of {d['repeats']} alternating runs per engine"
    share = "matmul_limit_gflops" in d  # since the limit is measured in the same run: each engine's share of it
    if share:
        where += f"; fp32 matrix-product limit {d['matmul_limit_gflops']:.0f} GFLOP/s, measured in the same run"
    dtypes = "matmul_limit_gflops_by_dtype" in d  # since the weights' dtype is a column: the limit in that dtype too
    if dtypes:
        where += "".join(f"; {k} limit {v:.0f} GFLOP/s" for k, v in d["matmul_limit_gflops_by_dtype"].items()
                         if k != "float32")
    rows = [[f"`{r['model']}`"] + ([r["dtype"]] if dtypes else [])
            + [f"{r['params_m']}M", f"{r['prompts']} x {r['n']}", r["batch"], r["max_new_tokens"],
               r["hf_tok_s"], r["fast_tok_s"], f"**{r['ratio']:.2f}x**", r["greedy_identical"]]
            + ([f"{r['hf_share_of_limit']:.0%}", f"{r['fast_share_of_limit']:.0%}"] if share else [])
            for r in d["rows"]]
    sources = list(dict.fromkeys(r["source"] for r in d["rows"] if "source" in r))
    caption = source(name, link, where) + "".join(f"; `{r['model']}` from {s}" for r in d["rows"][:1] for s in sources)
    header = ["model"] + (["weights"] if dtypes else []) + [
        "params", "prompts x n", "batch", "max new", "HF `generate` tok/s", "rewdistill tok/s", "ratio",
        "greedy identical"] + (["HF share of fp32 limit", "rewdistill share of fp32 limit"] if share else [])
    return caption + "\n\n" + table(header, rows, right_from=1)


def rl_step_table(names: list[str], link) -> str:
    """Seconds per RL step by trainer, one group of columns per JSON (policy / reward model pair)."""
    runs = [load(n) for n in names]
    lines = []
    for n, d in zip(names, runs):
        w = d["work"]
        lines.append(source(n, link, f"policy `{Path(w['policy']).name}`, reward model `{Path(w['reward_model']).name}`"
                            f"; {w['prompts_per_step']} prompts x {w['group']} responses, <= {w['max_new_tokens']} "
                            f"new tokens, KL {w['beta']}, lr {w['lr']}; median of {d['rows'][0]['steps_timed']} steps; "
                            f"TRL {d['trl']}, torch {d['torch']}, {d['threads']} threads"))
    trainers = list(dict.fromkeys(r["trainer"] for d in runs for r in d["rows"]))  # a JSON may lack a newer row
    header, rows = ["trainer"], [[t] for t in trainers]
    for i, d in enumerate(runs, 1):
        header += [f"({i}) s / step", f"({i}) generation", f"({i}) rest", f"({i}) TRL ÷ this"]
        by_name = {r["trainer"]: r for r in d["rows"]}
        for row, t in zip(rows, trainers):
            r = by_name.get(t)
            row += ["–"] * 4 if r is None else [f"{r['seconds_per_step']:.3f}", f"{r['generation_s']:.3f}",
                                                 f"{r['other_s']:.3f}", f"{r['trl_over_this']:.2f}x"]
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(header, rows)


def train_speed_table(names: list[str], link) -> str:
    """`benchmarks/train_speed.py`: SFT and reward-model training tokens/s by trainer, and the ratios."""
    lines, rows = [], []
    for i, n in enumerate(names, 1):
        d = load(n)
        lines.append(source(n, link, f"{d['task']}, {d['questions']} training questions ({d['sft_sequences']} SFT "
                            f"sequences, {d['rm_sequences']} reward-model sequences, {d['rm_pairs']} pairs), batch "
                            f"{d['batch']}, one epoch, median of {d['repeats']} runs in turn, "
                            f"{d['torch_threads']} threads"))
        for r in d["rows"]:
            rows.append([f"({i}) {r['stage']}", r["trainer"], f"{r['tokens_per_s']}",
                         f"{r['x_vs_rewdistill_random']:.2f}x",
                         f"{r['x_vs_trl']:.2f}x" if r["x_vs_trl"] is not None else "–",
                         f"{r['x_vs_trl_bf16']:.2f}x" if r.get("x_vs_trl_bf16") is not None else "–"])
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        ["", "trainer", "tokens / s", "÷ rewdistill random batching", "÷ TRL (fp32)", "÷ TRL bf16"], rows,
        right_from=2)


def side_by_side_table(names: list[str], link) -> str:
    """`benchmarks/side_by_side.py`: two commits' default runs back to back, seconds per stage and the ratios."""
    runs = [load(n) for n in names]
    lines = [source(n, link, f"{d['task']}: `{d['base']['commit']}` then `{d['new']['commit']}`, one after the other")
             for n, d in zip(names, runs)]
    header, rows = ["stage"], {}
    for i, d in enumerate(runs, 1):
        header += [f"({i}) `{d['base']['commit']}` s", f"({i}) `{d['new']['commit']}` s", f"({i}) old ÷ new"]
    stages = list(dict.fromkeys(s for d in runs for s in d["new"]["stage_seconds"]))
    for s in stages:
        rows[s] = [s]
        for d in runs:
            b, n = d["base"]["stage_seconds"].get(s), d["new"]["stage_seconds"].get(s)
            rows[s] += [f"{b:.0f}" if b is not None else "–", f"{n:.0f}" if n is not None else "–",
                        f"{d['speedup'][s]:.2f}x" if s in d["speedup"] else "–"]
    total = ["**wall**"]
    acc = ["test accuracy SFT → RL (%)"]
    for d in runs:
        total += [f"**{d['base']['wall_seconds']:.0f} ({minutes(d['base']['wall_seconds'])})**",
                  f"**{d['new']['wall_seconds']:.0f} ({minutes(d['new']['wall_seconds'])})**",
                  f"**{d['speedup']['wall']:.2f}x**"]
        for r in ("base", "new"):
            a = d[r]["accuracy"]
            acc.append(f"{pct(a['student_sft'])} → {pct(a['student_rl'])}")
        acc.append("")
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        header, [*rows.values(), total, acc])


def profile_table(name: str, link, top: int = 6) -> str:
    """`benchmarks/profile_stages.py`: per stage, the functions with the most own time and their share."""
    d = load(name)
    what = d.get("what") or f"each stage rerun alone under cProfile from `{Path(d['run']).name}`"
    caption = source(name, link, f"{d['task']}, {what} (overrides: {', '.join(d['overrides']) or 'none'}), "
                     f"{d['torch_threads']} threads")
    rows = []
    for st in d["stages"]:
        for i, r in enumerate(st["top"][:top]):
            rows.append([f"{st['stage']} ({st['seconds_profiled']:.0f} s)" if i == 0 else "",
                         f"`{r['function']}`", f"{r['share']:.0%}", f"{r['tottime_s']:.1f}", str(r["calls"])])
    return caption + "\n\n" + table(["stage (seconds profiled)", "function (own time)", "share", "s", "calls"],
                                      rows, right_from=2)


def lever_result(r: dict, side: str) -> str:
    """The result column of a levers row's non-first side: how far its output moved, or what compiling cost."""
    if side in (r.get("max_abs_score_diff") or {}):
        return f"max score difference {r['max_abs_score_diff'][side]:.3g}"
    if "max_abs_diff" in r:
        return f"max output difference {r['max_abs_diff']:.2g}"
    if "compile_s" not in r:
        return ""
    pays = (f"pays after {r['break_even_steps']} steps" if r["break_even_steps"] is not None else "never pays")
    stage = f" (the stage ran {r['stage_steps']})" if "stage_steps" in r else ""
    moved = (f"; loss {r['loss_diff']['first_step']:.1g} from eager's at step 1, up to "
             f"{r['loss_diff']['max_over_steps']:.1g} later" if "loss_diff" in r else "")
    return f"compiling took {r['compile_s']:.0f} s: {pays}{stage}{moved}"


def levers_table(names: list[str], link) -> str:
    """`benchmarks/levers.py`: ways of doing the same work side by side, median seconds, the speed-up over the first
    side and the side the defaults use."""
    lines, rows = [], []
    for i, n in enumerate(names, 1):
        d = load(n)
        lines.append(source(n, link, f"{d['task']}, median of {d['repeats']} alternating runs, "
                                     f"{d['torch_threads']} threads, torch {d['torch']}"))
        for r in d["rows"]:
            for k, side in enumerate(r["median_s"]):
                x = "1.00x" if k == 0 else f"{r['speedup'][side]:.2f}x"
                diff = lever_result(r, side) if k else ""
                rows.append([f"({i}) {r['lever']}" if k == 0 else "", r["work"] if k == 0 else "",
                             f"**{side}**" if side == r["kept"] else side, f"{r['median_s'][side]:.2f}", x, diff])
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        ["lever", "work", "side (**the default**)", "seconds", "speed vs the first side", "result"], rows,
        right_from=3)


def op_profile_table(name: str, link) -> str:
    """`benchmarks/levers_kernels.py`'s `sft_op_profile`: an eager SFT step's operators by own CPU time."""
    d = load(name)
    rows = [[f"`{r['op']}`", f"{r['ms_per_step']:.2f}", f"{r['calls_per_step']:g}", f"{r['share']:.0%}"]
            for r in d["sft_op_profile"]]
    caption = source(name, link, f"{d['task']}, eager SFT steps at the defaults under torch.profiler, "
                                 f"{d['torch_threads']} threads, torch {d['torch']}")
    return caption + "\n\n" + table(["operator (own time)", "ms per step", "calls per step", "share"], rows)


def sft_setting(r: dict) -> str:
    """An `sft_sweep.py` row's overrides as the table's setting: 'sft.epochs 10, sft.lr 4e-3'."""
    return ", ".join(f"{k} {v}" for k, v in r["overrides"].items())


def sft_sweep_table(name: str, link) -> str:
    """`benchmarks/sft_sweep.py`: the SFT student's greedy validation accuracy by setting, per task."""
    rows_in = load(name)
    seeds = sorted({r["seed"] for r in rows_in})
    caption = source(name, link, f"validation split, seed {' '.join(map(str, seeds))}, "
                     f"OMP_NUM_THREADS {field(rows_in, 'omp_num_threads')}; students trained elsewhere and only scored "
                     "here say so in the JSON (`trained_by`)")
    rows = [[r["task"], sft_setting(r), pct(r["sft"])] for r in rows_in]
    return caption + "\n\n" + table(["task", "setting", "SFT student, greedy (%)"], rows, right_from=2)


def sft_seeds_table(name: str, link) -> str:
    """`benchmarks/sft_sweep.py` over seeds: per task and setting, the SFT student's greedy validation accuracy per
    seed and its mean ± std."""
    rows_in = load(name)
    caption = source(name, link, f"validation split, OMP_NUM_THREADS {field(rows_in, 'omp_num_threads')}; students "
                     "trained elsewhere and only scored here say so in the JSON (`trained_by`)")
    groups: dict[tuple[str, str], list[dict]] = {}  # (task, setting) -> its rows, in first-seen order
    for r in rows_in:
        groups.setdefault((r["task"], sft_setting(r)), []).append(r)
    body = []
    for (task, setting), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        acc = [100 * r["sft"] for r in rs]
        body.append([task, setting, " / ".join(str(r["seed"]) for r in rs), " / ".join(f"{x:.1f}" for x in acc),
                     "{:.1f} ± {:.1f}".format(*mean_std(acc))])
    return caption + "\n\n" + table(["task", "setting", "seeds", "SFT student per seed (%)", "mean ± std"], body,
                                     right_from=2)


def rm_data_table(names: list[str], link) -> str:
    """`benchmarks/rm_data_sweep.py`: the reward model's training rows, seconds and validation ranking, per variant."""
    caption = "; ".join(source(n, link, "validation split, seed 0") for n in names)
    rows = []
    for n in names:
        d = load(n)
        teacher = d["ranking"]["teacher mean log-prob"]
        for v, r in d["variants"].items():
            sig = d["ranking"][v]
            rows.append([d["task"], v, str(r["teacher_rows"] + r["student_rows"]), f"{r['seconds']:.0f}",
                         pct(sig["rm_best_of_k"]), f"{sig['rm_auc_within']:.3f}", pct(sig["maj_at_k"]),
                         pct(teacher["rm_best_of_k"])])
    header = ["task", "variant", "rows trained on", "s", "best-of-8 (%)", "AUC within a question", "maj@8 (%)",
              "teacher likelihood best-of-8 (%)"]
    return caption + "\n\n" + table(header, rows, right_from=2)


def batching_check_table(names: list[str], link) -> str:
    """`benchmarks/batching_check.py`: a training change (question batching unless the JSON names another) on
    validation, per seed and mean ± std, without it and with it."""
    lines, rows = [], []
    for i, n in enumerate(names, 1):
        d = load(n)
        before, after = d.get("labels", ["random", "question"])
        change = ", ".join(f"`{k} {v}`" for k, v in d.get("change", {"batching": "question"}).items())
        lines.append(source(n, link, f"{d['task']}, stage {d['stage']}, {change}, validation, seeds "
                            f"{' '.join(map(str, d['seeds']))}"))
        for m, s in d["summary"].items():
            f = (lambda x: f"{x:.3f}") if m.startswith("auc") else pct  # AUC as it is, accuracies in %
            per_seed = " / ".join(f"{f(r[f'{m}_{before}'])} → {f(r[f'{m}_{after}'])}" for r in d["rows"])
            rows.append([f"({i}) {d['task']}", f"{before} → {after}", m,
                         f"{f(s[before]['mean'])} ± {f(s[before]['std'])}",
                         f"{f(s[after]['mean'])} ± {f(s[after]['std'])}", per_seed,
                         "yes" if s["within_one_seed_std"] else "**no**"])
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        ["", "change", "metric", "without", "with", "per seed", "within one seed-std"], rows, right_from=3)


def precision_check_table(names: list[str], link) -> str:
    """`benchmarks/precision_check.py`: whole default runs before and after a change, validation accuracy of the SFT
    and RL students and of the teacher, per seed and mean ± std."""
    lines, rows = [], []
    for i, n in enumerate(names, 1):
        d = load(n)
        first, *later = d["labels"]
        lines.append(source(n, link, f"{d['task']}, validation, {d['note']}"))
        for m, name in (("student_sft", "SFT student"), ("student_rl", "RL student"), ("teacher_greedy", "teacher")):
            for label in d["labels"]:
                s = d["summary"][label][m]
                per_seed = " / ".join(pct(r[m]) for r in sorted(d["rows"], key=lambda r: r["seed"])
                                      if r["side"] == label)
                within = d["within_one_std_of_first"].get(label, {}).get(m)
                ok = "–" if within is None else ("yes" if within else "**no**")
                rows.append([f"({i}) {d['task']}", name, label, f"{pct(s['mean'])} ± {pct(s['std'])}", per_seed, ok])
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        ["", "greedy accuracy of", "side", "mean ± std (%)", "per seed (%)", "within one seed-std of the first"],
        rows, right_from=3)


def stage_time_table(names: list[str], link) -> str:
    """`benchmarks/stage_time.py`: one stage of a finished run timed with and without a change, one after the
    other on the same inputs."""
    lines, rows = [], []
    for i, n in enumerate(names, 1):
        d = load(n)
        lines.append(source(n, link, f"stage {d['stage']}, base run `{d['base']}`, threads {d['threads']}"))
        for label, side in d["sides"].items():
            over = ", ".join(f"`{k} {v}`" for k, v in side["overrides"].items()) or "as the base run"
            rows.append([f"({i}) {d['stage']}", label, over, " / ".join(f"{x:.0f}" for x in side["seconds"]),
                         f"{side['ratio_to_first']:.2f}x"])
    return "\n".join(f"{i}. {x}" for i, x in enumerate(lines, 1)) + "\n\n" + table(
        ["", "side", "overrides", "stage seconds", "speed vs the first side"], rows, right_from=3)


# ---- validation sweeps (benchmarks/rl_sweep.py): .jsonl rows or a JSON with "rows"

QUIET = {"rl.watch_every", "rl.select_every", "evaluate.best_of_k"}  # options that do not change training


def sweep_rows(name: str) -> list[dict]:
    d = load(name)
    return d if isinstance(d, list) else d["rows"]


def describe(r: dict) -> str:
    over = ", ".join(f"{k.removeprefix('rl.')} {v}" for k, v in r["overrides"].items() if k not in QUIET)
    return f"`{r['variant']}`: {over or 'defaults'}"


def curve(values: list[float], steps: list[int]) -> str:
    if not values:
        return "–"
    every = {b - a for a, b in zip(steps, steps[1:])}
    return " ".join(f"{100 * v:.0f}" for v in values) + (f" (every {every.pop()})" if len(every) == 1 else "")


def sweep_caption(name: str, link) -> str:
    rows = sweep_rows(name)
    sft = " / ".join(dict.fromkeys(pct(r["sft"]) for r in rows))
    base = field(rows, "base") or field(rows, "base_run")
    caption = source(name, link, f"{rows[0]['split']} split, SFT student {sft}%")
    return caption + (f"; base run: `{base}`" if base else "")


def sweep_table(name: str, link) -> str:
    """One task's sweep: RL student, the gold watch, the gold-free agreement, their Spearman, RL seconds."""
    rows = sweep_rows(name)
    cols = [("RL student (%)", lambda r: pct(r["rl"])),
            ("watch: gold accuracy (%)", lambda r: curve(r["watch_gold"], r["watch_steps"])),
            ("agreement (%)", lambda r: " ".join(f"{100 * a:.1f}" for a in r["selection"][0]["agreement"])
             if r.get("selection") else "–"),
            ("Spearman agreement vs watch", lambda r: f"{r['selection_vs_gold_spearman']:.2f}"
             if r.get("selection_vs_gold_spearman") is not None else "–"),
            ("watch diverges at step", lambda r: "–" if "divergence_step" not in r
             else "no" if r["divergence_step"] is None else str(r["divergence_step"])),
            ("RL s", lambda r: f"{r['rl_seconds']:.0f}" if r.get("rl_seconds") is not None else "–")]
    cols = [c for c in cols if any(c[1](r) != "–" for r in rows)]
    body = [[describe(r), *(f(r) for _, f in cols)] for r in rows]
    return sweep_caption(name, link) + "\n\n" + table(["variant", *(c for c, _ in cols)], body, right_from=99)


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as `rewdistill ablate` reports them."""
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def seeds_table(names: list[str], option: str, link) -> str:
    """Validation sweeps of one option over seeds (one JSONL per task, rows with overrides `seed` and `option`):
    per task and value of the option, the RL student per seed and its mean ± std, beside the SFT student's."""
    body = []
    for name in names:
        rows = sweep_rows(name)
        task = field(rows, "task") or name
        values = list(dict.fromkeys(r["overrides"].get(option, "default") for r in rows))
        first: dict[int, float] = {}  # seed -> the first value's RL student
        for v in values:
            mine = sorted(((int(r["overrides"].get("seed", 0)), r) for r in rows
                           if r["overrides"].get(option, "default") == v), key=lambda x: x[0])
            rl = [100 * r["rl"] for _, r in mine]
            first = first or {s: x for (s, _), x in zip(mine, rl)}
            diff = [f"{x - first[s]:+.1f}" for (s, _), x in zip(mine, rl) if s in first]
            body.append([task, f"`{v}`", " / ".join(str(s) for s, _ in mine),
                         " / ".join(f"{x:.1f}" for x in rl), "{:.1f} ± {:.1f}".format(*mean_std(rl)),
                         " / ".join(diff) if v != values[0] else "–", " / ".join(pct(r["sft"]) for _, r in mine)])
    captions = "\n".join(f"- {sweep_caption(n, link)}" for n in names)
    return captions + "\n\n" + table(["task", option, "seeds", "RL student per seed (%)", "mean ± std",
                                        "vs the first row, per seed (points)", "SFT student per seed (%)"], body,
                                       right_from=3)


def guard_table(name: str, link) -> str:
    """`benchmarks/guard_check.py`: the gold-free selection check against gold on its own questions and on the
    watch's questions."""
    d = load(name)
    rows = d["runs"]
    rho = d["spearman_over_runs"]
    own = rho["agreement_change_vs_gold_change_on_its_questions"]
    other = rho["gold_change_on_the_watchs_questions_vs_on_the_checks"]
    caption = source(name, link, f"{d['split']} split; the watch's questions are the first "
                     f"{rows[0]['n_watch_half']}, the selection check's the last {rows[0]['n_selection_half']}; "
                     "Spearman over the runs of RL's change in agreement vs in gold on the check's questions "
                     f"{own:.2f}, of the change in gold on the watch's questions vs on the check's {other:.2f}")
    arrow = lambda a, b: f"{100 * a:.1f} → {100 * b:.1f}"  # noqa: E731
    body = []
    for r in rows:
        vote = r["select_teacher_vote"]
        w, s = r["gold_watch_half"], r["gold_selection_half"]
        body.append([describe(r), arrow(r["select_agreement"][0], r["select_agreement"][-1]),
                     arrow(vote[0], vote[-1]) if vote else "–", arrow(s["student_sft"], s["student_rl"]),
                     arrow(w["student_sft"], w["student_rl"])])
    return caption + "\n\n" + table(["variant", "check: agreement (%)", "check: teacher vote (%)",
                                      "gold on the check's questions (%)", "gold on the watch's questions (%)"],
                                     body)


def ranking_table(name: str, link) -> str:
    """Rows that scored the SFT student's K samples with the reward model (diagnostics.ranking)."""
    rows = [r for r in sweep_rows(name) if r.get("ranking_student_sft_validation")]
    rk = [r["ranking_student_sft_validation"] for r in rows]
    same = lambda key: " / ".join(dict.fromkeys(pct(x[key]) for x in rk))  # noqa: E731
    k = " / ".join(dict.fromkeys(str(x["k"]) for x in rk))
    caption = (sweep_caption(name, link) + f"; the SFT student's {k} samples per question: random sample "
               f"{same('sample_mean')}%, majority vote {same('maj_at_k')}%, pass@{k} {same('pass_at_k')}%")
    body = [[describe(r), pct(x["rm_best_of_k"]), f"{x['rm_auc_within']:.2f}", f"{x['rm_auc']:.2f}", pct(r["rl"])]
            for r, x in zip(rows, rk)]
    return caption + "\n\n" + table(["variant", f"best-of-{k} by the reward model (%)", "AUC within a question",
                                     "AUC over all responses", "RL student (%)"], body)


def ranking_signals(names: list[str], link) -> str:
    """`benchmarks/rm_ranking.py` outputs: per task, best-of-K and AUC within a question of every score that ranked
    the SFT student's K samples (reward models, the teacher's and the student's mean log-prob)."""
    blocks = []
    for name in names:
        d = load(name)
        first = next(iter(d["signals"].values()))
        k = d["k"]
        caption = source(name, link, f"{d['task']}, {d['split']} split, the SFT student's {k} samples per question at "
                         f"T = {d['temperature']:g}: random sample {pct(first['sample_mean'])}%, majority vote "
                         f"{pct(first['maj_at_k'])}%, pass@{k} {pct(first['pass_at_k'])}%")
        labels = d.get("labels", {})
        body = [[labels.get(sig, sig), pct(r["rm_best_of_k"]), f"{r['rm_auc_within']:.2f}"]
                for sig, r in d["signals"].items()]
        blocks.append(caption + "\n\n" + table(["score", f"best-of-{k} (%)", "AUC within a question"], body))
    return "\n\n".join(blocks)


def sweep_by_task(names: list[str], link) -> str:
    """Several tasks' sweeps side by side, one row per variant name."""
    per_task = [{r["variant"]: r for r in sweep_rows(n)} for n in names]
    tasks = [re.search(r"tiny-\w+", n).group(0) for n in names]
    order = list(dict.fromkeys(v for rows in per_task for v in rows))
    body = [["SFT student (no RL)", *(pct(next(iter(rows.values()))["sft"]) for rows in per_task),
             *("" for _ in per_task)]]
    for v in order:
        first = next(rows[v] for rows in per_task if v in rows)
        body.append([describe(first), *(pct(rows[v]["rl"]) if v in rows else "–" for rows in per_task),
                     *(f"{rows[v]['rl_seconds']:.0f}" if v in rows else "–" for rows in per_task)])
    caption = bullets([sweep_caption(n, link) for n in names])
    return caption + "\n\n" + table(["variant", *(f"{t} RL (%)" for t in tasks), *(f"{t} RL s" for t in tasks)], body)


# ---- the shipped models and the file index

def zoo_models(reports: list[tuple[str, str]], link) -> str:
    """Test accuracy of zoo teachers/students from make_zoo.py's reports; (path, which model set) pairs."""
    rows = []
    for path, which in reports:
        d = load(Path(path))
        for role in ("teacher", "student"):
            m = d[role]
            t = m["test"]
            cfg = ZOO / role / "config.json"
            arch = json.loads(cfg.read_text()) if which == "shipped" and cfg.exists() else None
            desc = (f" ({arch['model_type']}, d={arch['hidden_size']}, {arch['num_hidden_layers']} layers)"
                    if arch else "")
            rows.append([f"`zoo:{role}`, {which}{desc}", f"{m['params'] / 1e6:.2f}M",
                         *(x for task in ("tiny-arith", "tiny-choice") for x in
                           (pct(t[task]["greedy"]), pct(t[task]["maj@8"]) if "maj@8" in t[task] else "–")),
                         f"[`{Path(path).name}`]({link(Path(path))}), {commit(d)}"])
    seeds = {len(load(Path(p))["teacher"]["test"]["tiny-arith"]["maj@8_per_seed"]) for p, _ in reports}
    caption = f"Test split; maj@8 is the mean over {' / '.join(map(str, seeds))} sampling seeds."
    return caption + "\n\n" + table(["model", "params", "tiny-arith greedy (%)", "tiny-arith maj@8 (%)",
                                     "tiny-choice greedy (%)", "tiny-choice maj@8 (%)", "report"], rows, right_from=1)


def results_files(link) -> str:
    """Every results file with the teacher and the commit it was measured at."""
    rows = []
    for p in sorted(RESULTS.glob("*.json*")):
        d = load(p.name)
        rows.append([f"[`{p.name}`]({link(p.name)})", f"`{field(d, 'teacher')}`" if field(d, "teacher") else "–",
                     commit(d).removeprefix("commit "), field(d, "date") or "–"])
    return table(["file", "teacher", "commit measured", "date"], rows, right_from=99)


ISSUE15_16 = ["ablation_issue15_16_tiny-arith.json", "ablation_issue15_16_tiny-choice.json"]
ISSUE24 = ["ablation_issue24_tiny-arith.json", "ablation_issue24_tiny-choice.json"]
ISSUE24_E12 = ["ablation_issue24_e12_tiny-arith.json", "ablation_issue24_e12_tiny-choice.json"]
ISSUE24_RMVOTE = ["ablation_issue24_rmvote_tiny-arith.json", "ablation_issue24_rmvote_tiny-choice.json"]
ISSUE24_Q = ["ablation_issue24_q_tiny-arith.json", "ablation_issue24_q_tiny-choice.json"]
ISSUE24_QF = ["ablation_issue24_q_full_tiny-arith.json", "ablation_issue24_q_full_tiny-choice.json"]
ISSUE24_S = ["ablation_issue24_s_tiny-arith.json", "ablation_issue24_s_tiny-choice.json"]
CHAIN_ABLATIONS = [f"ablation-tiny-{t}{s}.json" for s in ("_before_chunk_seeding", "_before_fast_sampler", "")
                   for t in ("arith", "choice")]
TABLES = {
    "rm-ranking": partial(ranking_signals, ["rm_ranking_tiny-arith.json", "rm_ranking_tiny-choice.json"]),
    "rm-ranking-default": partial(ranking_signals, ["rm_ranking_default_tiny-arith.json",
                                                    "rm_ranking_default_tiny-choice.json"]),
    "sweep-issue24-arith": partial(sweep_table, "issue24_sweep_validation_tiny-arith.jsonl"),
    "rl-recipe-arith": partial(sweep_table, "rl_recipe_validation_tiny-arith.jsonl"),
    "rl-recipe-choice": partial(sweep_table, "rl_recipe_validation_tiny-choice.jsonl"),
    "rl-recipe2-arith": partial(sweep_table, "rl_recipe2_validation_tiny-arith.jsonl"),
    "rl-levers3-arith": partial(sweep_table, "rl_levers3_validation_tiny-arith.jsonl"),
    "rl-levers3-choice": partial(sweep_table, "rl_levers3_validation_tiny-choice.jsonl"),
    "rl-recipe2-choice": partial(sweep_table, "rl_recipe2_validation_tiny-choice.jsonl"),
    "ablation-issue24-rmvote": partial(ablation_report, ISSUE24_RMVOTE),
    "guard-issue24-arith": partial(guard_table, "issue24_guard_validation_tiny-arith.json"),
    "readme-results": partial(ablation_means, ISSUE24_S),
    "ablation-issue24-s": partial(ablation_report, ISSUE24_S),
    "ranking-issue24-s": partial(ablation_ranking, ISSUE24_S),
    "ablation-issue24-q": partial(ablation_report, ISSUE24_QF),
    "ranking-issue24-q": partial(ablation_ranking, ISSUE24_Q),
    "ablation-issue24": partial(ablation_report, ISSUE24),
    "ablation-issue24-e12": partial(ablation_report, ISSUE24_E12),
    "ranking-issue24-e12": partial(ablation_ranking, ISSUE24_E12),
    "ranking-issue24": partial(ablation_ranking, ISSUE24),
    "results-issue15-16": partial(ablation_means, ISSUE15_16),
    "ablation-issue15-16": partial(ablation_report, ISSUE15_16),
    "ablation-history": partial(ablation_history, CHAIN_ABLATIONS),
    "default-runs": partial(default_runs, ["default_run_tiny-arith.json", "default_run_tiny-choice.json"]),
    "sweep-issue15-arith": partial(sweep_table, "issue15_sweep_validation_tiny-arith.jsonl"),
    "sweep-issue15-ranking": partial(ranking_table, "issue15_sweep_validation_tiny-arith.jsonl"),
    "sweep-issue15-choice": partial(sweep_table, "issue15_sweep_validation_tiny-choice.jsonl"),
    "sweep-issue15-16": partial(sweep_by_task, ["issue15_16_sweep_validation_tiny-arith.json",
                                                "issue15_16_sweep_validation_tiny-choice.json"]),
    "rl-defaults-arith": partial(sweep_table, "rl_sweep_validation_tiny-arith.jsonl"),
    "rl-defaults-choice": partial(sweep_table, "rl_sweep_validation_tiny-choice.jsonl"),
    "sampling-cpu": partial(sampling_table, "sampling.json"),
    "sampling-smollm2": partial(sampling_table, "sampling_smollm2.json"),
    "sampling-bf16": partial(sampling_table, "sampling_bf16.json"),
    "sampling-draw": partial(sampling_table, "sampling_draw.json"),
    "sampling-compaction": partial(sampling_table, "sampling_compaction.json"),
    "default-run-time-levers": partial(pipeline_times, ["side_by_side_tiny-choice_5136e8a.json#new",
                                                        "default_run_time_tiny-choice_8d15120.json"]),
    "sampling-h200": partial(sampling_table, "sampling_h200.json"),
    "rl-step": partial(rl_step_table, ["rl_step_draw.json", "rl_step_head.json", "rl_step_sft.json", "rl_step.json"]),
    "rl-step-again": partial(rl_step_table, ["rl_step_c7c4b21.json", "rl_step_e2739e3.json"]),
    "pipeline-time": partial(pipeline_times, ["pipeline_time_before_fast_sampler.json", "pipeline_time.json",
                                              "pipeline_time_tiny-choice_before_fast_sampler.json",
                                              "default_run_time_tiny-arith.json",
                                              "default_run_time_tiny-arith_4df7cd3.json",
                                              "default_run_time_tiny-arith_d8a6586.json",
                                              "default_run_time_tiny-choice_d8a6586.json"]),
    "default-run-time-issue24": partial(pipeline_times, ["default_run_time_tiny-arith_838abf4.json",
                                                         "default_run_time_tiny-choice_9fce4b7.json",
                                                         "default_run_time_tiny-arith_d4ab3e9.json",
                                                         "default_run_time_tiny-choice_d4ab3e9.json",
                                                         "default_run_time_tiny-arith_16d9c82.json",
                                                         "default_run_time_tiny-choice_16d9c82.json",
                                                         "default_run_time_tiny-arith_78287f5.json",
                                                         "default_run_time_tiny-choice_78287f5.json",
                                                         "default_run_time_tiny-choice_73cd226_e10_rmq.json",
                                                         "default_run_time_tiny-arith_18b442c.json",
                                                         "default_run_time_tiny-choice_18b442c.json"]),
    "default-run-time-bf16": partial(pipeline_times, ["default_run_time_tiny-arith_e397a85.json",
                                                      "side_by_side_tiny-arith_7cc99d2.json#new",
                                                      "default_run_time_tiny-choice_e397a85.json",
                                                      "default_run_time_tiny-choice_7cc99d2.json"]),
    "default-run-time-suffix": partial(pipeline_times, [f"default_run_time_tiny-{t}_{c}.json" for c in
                                                        ("18b442c", "e397a85") for t in ("arith", "choice")]),
    "zoo-models": partial(zoo_models, [("src/rewdistill/models/zoo/zoo_report.json", "shipped"),
                                       ("benchmarks/results/zoo_report_chain_teacher.json", "chain-built, before")]),
    "sft-epochs": partial(sft_sweep_table, "sft_epochs_validation.jsonl"),
    "sft-order": partial(sft_sweep_table, "sft_order_validation.jsonl"),
    "sft-epochs-choice-seeds": partial(sft_seeds_table, "sft_epochs_choice_seeds_validation.jsonl"),
    "train-speed": partial(train_speed_table, ["train_speed_rm_scalar_suffix_tiny-arith.json",
                                               "train_speed_bf16_sft_tiny-arith.json",
                                               "train_speed_bf16_sft_tiny-choice.json",
                                               "train_speed_bf16_rm_tiny-arith.json",
                                               "train_speed_suffix_tiny-arith.json",
                                               "train_speed_suffix_tiny-choice.json",
                                               "train_speed_sft_compile_tiny-arith.json",
                                               "train_speed_sft_compile_tiny-choice.json",
                                               "train_speed_tiny-arith_head.json", "train_speed_tiny-arith.json",
                                               "train_speed_tiny-choice.json"]),
    "batching-check": partial(batching_check_table, ["batching_check_sft_tiny-arith.json",
                                                     "batching_check_rm_tiny-arith.json",
                                                     "batching_check_rm_tiny-choice.json"]),
    "stage-time-sft-compile": partial(stage_time_table, ["stage_time_sft_compile_tiny-choice.json"]),
    "stage-time-rm-batching": partial(stage_time_table, ["stage_time_rm_batching_tiny-choice.json"]),
    "stage-time-rl-batching": partial(stage_time_table, ["stage_time_rl_batching_tiny-arith.json",
                                                         "stage_time_rl_batching_tiny-choice.json"]),
    "rl-batching-seeds": partial(seeds_table, ["rl_batching_validation_tiny-arith.jsonl",
                                               "rl_batching_validation_tiny-choice.jsonl"], "rl.batching"),
    "sampling-check": partial(precision_check_table, ["sampling_check_tiny-arith.json",
                                                      "sampling_check_tiny-choice.json"]),
    "precision-check": partial(precision_check_table, ["precision_check_tiny-arith.json",
                                                        "precision_check_tiny-choice.json"]),
    "compile-check": partial(batching_check_table, ["compile_check_sft_tiny-arith.json",
                                                    "compile_check_sft_tiny-choice.json"]),
    "suffix-check": partial(batching_check_table, [f"suffix_check_{s}_tiny-{t}.json" for s in ("sft", "rm")
                                                   for t in ("arith", "choice")]),
    "rm-data": partial(rm_data_table, ["rm_data_sweep_tiny-arith.json", "rm_data_sweep_tiny-choice.json"]),
    "side-by-side": partial(side_by_side_table, ["side_by_side_tiny-arith_c7c4b21.json",
                                                 "side_by_side_tiny-choice_c7c4b21.json",
                                                 "side_by_side_tiny-arith_5136e8a.json",
                                                 "side_by_side_tiny-choice_5136e8a.json",
                                                 "side_by_side_tiny-arith_7cc99d2.json",
                                                 "side_by_side_tiny-arith.json", "side_by_side_tiny-choice.json",
                                                 "side_by_side_tiny-arith_c99bf8c.json"]),
    "profile-stages": lambda link: "\n\n".join(profile_table(f"profile_stages_tiny-{t}_169835a.json", link)
                                                  for t in ("choice", "arith")),
    "profile-stages-now": partial(profile_table, "profile_stages_tiny-choice_b14132a.json"),
    "levers": partial(levers_table, ["levers_tiny-choice.json"]),
    "levers-kernels": partial(levers_table, ["levers_kernels_tiny-choice.json"]),
    "sft-op-profile": partial(op_profile_table, "levers_kernels_tiny-choice.json"),
    "levers-check": partial(precision_check_table, ["levers_check_tiny-arith.json", "levers_check_tiny-choice.json"]),
    "profile-rl-step": partial(profile_table, "profile_rl_step.json", top=10),
    "results-files": results_files,
}


# ---- the regions

def render(doc: Path, text: str) -> str:
    """`text` of `doc` with every generated region rewritten."""
    def link(name: str | Path) -> str:
        return Path(os.path.relpath(path_of(name), doc.parent)).as_posix()

    def fill(m: re.Match) -> str:
        if m.group(2) not in TABLES:
            raise SystemExit(f"{doc.relative_to(ROOT)}: unknown table {m.group(2)!r}; benchmarks/tables.py "
                             f"TABLES has {', '.join(TABLES)}")
        return f"{m.group(1)}\n{TABLES[m.group(2)](link).strip()}\n\n{m.group(4)}"
    return REGION.sub(fill, text)


def stale(doc: str, text: str) -> list[str]:
    """'DOC: table NAME differs ...' for each generated region of `text` (the doc `doc`) that render() would change."""
    pairs = zip(REGION.finditer(text), REGION.finditer(render(ROOT / doc, text)))
    return [f"{doc}: table {old.group(2)} differs from what benchmarks/tables.py writes" for old, new in pairs
            if old.group(3) != new.group(3)]


def differences() -> list[str]:
    """Every stale region of the committed docs, and every table that no doc shows."""
    texts = {doc: (ROOT / doc).read_text("utf-8") for doc in DOCS}
    used = {m.group(2) for text in texts.values() for m in REGION.finditer(text)}
    return [line for doc, text in texts.items() for line in stale(doc, text)] + \
        [f"table {name} is in no doc ({', '.join(DOCS)})" for name in TABLES if name not in used]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a doc differs from what it would be")
    args = ap.parse_args()
    if args.check:
        diffs = differences()
        print("\n".join(diffs) or "every generated table is up to date")
        sys.exit(1 if diffs else 0)
    for doc in DOCS:
        text = (ROOT / doc).read_text("utf-8")
        new = render(ROOT / doc, text)
        if new != text:
            (ROOT / doc).write_text(new, "utf-8")
            print(f"rewrote {doc}")


if __name__ == "__main__":
    main()

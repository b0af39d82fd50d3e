"""The weight-making script end to end in a micro configuration (tiny models, a few steps, no bounds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

from rewdistill.models.load import ZOO_DIR, load_causal_lm, load_prompt_format
from rewdistill.sampling.hf import generate
from rewdistill.tasks import get_task

SCRIPT = Path(__file__).parent.parent / "scripts" / "make_zoo.py"


def greedy_accuracy_of(model_dir, n: int) -> dict[str, float]:
    """Greedy accuracy of the model in `model_dir` on the first `n` test questions of each tiny task, measured here
    (plain-text prompts, the task's grading), not by the script."""
    model, fmt = load_causal_lm(str(model_dir)), load_prompt_format(str(model_dir), chat_template="off")
    out = {}
    for name in ["tiny-arith", "tiny-choice"]:
        task = get_task(name)
        exs = task.load("test")[:n]
        gens = generate(model, fmt, [task.prompt(e) for e in exs], 0.0, 1, 64, 200)
        out[name] = sum(task.is_correct(g.text, exs[g.prompt_index]) for g in gens) / len(exs)
    return out


def test_the_script_measures_greedy_accuracy_as_measured_here():
    """The script's `accuracy` on a model that answers some questions right (the shipped teacher): the same greedy
    accuracy as measured here (a micro run's models answer none, so its report alone cannot show a wrong measure)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_zoo", SCRIPT)
    mz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mz)
    mz.EVAL_N = 16
    got = mz.accuracy(load_causal_lm("zoo:teacher"), load_prompt_format("zoo:teacher").tokenizer, "test", maj=False)
    want = greedy_accuracy_of(ZOO_DIR / "teacher", n=16)
    assert {k: v["greedy"] for k, v in got.items()} == want
    assert all(0 < a < 1 for a in want.values()), want


def test_make_zoo_all_micro(tmp_path):
    shipped = {p: p.stat().st_mtime_ns for p in ZOO_DIR.rglob("*") if p.is_file()}
    work = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPT), "all", "--micro", "--work", str(work), "--threads", "1",
           "--max-steps", "4", "--check-every", "2", "--patience", "0", "--steps", "4",
           "--lo", "0", "--hi", "1", "--min-gain", "-1", "--warm-steps", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "teacher: chose step 2" in out.stdout
    dest = work / "zoo_out"
    report = json.loads((dest / "zoo_report.json").read_text())
    assert report["student"]["params"] <= report["teacher"]["params"] / 4
    for name in ["teacher", "student"]:
        assert (dest / name / "model.safetensors").exists()
        model = AutoModelForCausalLM.from_pretrained(dest / name)
        assert sum(p.numel() for p in model.parameters()) == report[name]["params"]
        AutoTokenizer.from_pretrained(dest / name)
        for task, acc in greedy_accuracy_of(dest / name, n=8).items():  # --micro measures 8 questions a task
            assert report[name]["test"][task]["greedy"] == acc, (name, task)
    assert "maj@8" in report["teacher"]["test"]["tiny-arith"]
    history = json.loads((work / "teacher_history.json").read_text())
    assert [h["step"] for h in history] == [2]
    # the shipped zoo is untouched by a micro run
    assert shipped == {p: p.stat().st_mtime_ns for p in ZOO_DIR.rglob("*") if p.is_file()}


def test_make_zoo_sweep_micro_picks_the_largest_qualified_gain(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_zoo", SCRIPT)
    mz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mz)
    def row(step, ga, gc, q=True):
        return {"step": step, "qualified": q, "val": {
            "tiny-arith": {"greedy": 0.5, "maj@8": 0.5 + ga}, "tiny-choice": {"greedy": 0.6, "maj@8": 0.6 + gc}}}

    # the smaller of the two gains decides; unqualified rows never win
    history = [row(10, 0.09, 0.05), row(20, 0.07, 0.06), row(30, 0.2, 0.2, q=False)]
    assert mz.best_qualified(history)["step"] == 20
    assert mz.best_qualified([row(5, 0.3, 0.3, q=False)]) is None

    work = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPT), "tokenizer", "--micro", "--work", str(work)]
    assert subprocess.run(cmd, capture_output=True, timeout=120, check=False).returncode == 0
    cmd = [sys.executable, str(SCRIPT), "sweep", "--micro", "--work", str(work), "--runs", "2", "--minutes", "4",
           "--max-steps", "4", "--check-every", "2", "--patience", "0", "--lo", "0", "--hi", "1", "--min-gain", "-1",
           "--styles", "sequential,net", "--warm-steps", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    sweep = json.loads((work / "sweep.json").read_text())
    assert [r["data_seed"] for r in sweep["runs"]] == [0, 1]
    assert sweep["chosen"]["run"] in (0, 1) and (work / "teacher" / "model.safetensors").exists()
    AutoModelForCausalLM.from_pretrained(work / "teacher")

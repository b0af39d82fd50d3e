"""The shipped tiny models: size, loading with plain transformers, and the accuracy bounds of the issue."""
import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewdistill.models.load import ZOO_DIR, load_causal_lm, load_prompt_format
from rewdistill.sampling.hf import generate
from rewdistill.tasks import get_task


def test_zoo_is_small_safetensors_and_loads_with_plain_transformers():
    files = [p for p in ZOO_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl")]
    params = {}
    for name in ["teacher", "student"]:
        model = AutoModelForCausalLM.from_pretrained(ZOO_DIR / name)
        AutoTokenizer.from_pretrained(ZOO_DIR / name)
        params[name] = sum(p.numel() for p in model.parameters())
    assert params["student"] <= params["teacher"] / 4


@pytest.mark.parametrize("name", ["teacher", "student"])
def test_greedy_test_accuracy_is_in_the_promised_band(name):
    """Teacher 45-80% greedy on each tiny task's test split; student base <= 15%; as zoo_report.json says."""
    report = json.loads((ZOO_DIR / "zoo_report.json").read_text())
    model, tok = load_causal_lm(f"zoo:{name}"), load_prompt_format(f"zoo:{name}")
    for task_name in ["tiny-arith", "tiny-choice"]:
        task = get_task(task_name)
        exs = task.load("test")
        gens = generate(model, tok, [task.prompt(e) for e in exs], 0.0, 1, 64, 200)
        acc = sum(task.is_correct(g.text, exs[g.prompt_index]) for g in gens) / len(exs)
        assert acc == pytest.approx(report[name]["test"][task_name]["greedy"], abs=0.01)
        if name == "teacher":
            assert 0.45 <= acc <= 0.80
            assert report[name]["test"][task_name]["maj@8"] >= acc + 0.05
        else:
            assert acc <= 0.15

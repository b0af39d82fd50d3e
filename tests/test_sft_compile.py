"""`sft.compile`: the compiled SFT forward trains the same model as the eager one, up to float rounding."""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from conftest import save_tiny

from rewdistill.models.load import load_causal_lm
from rewdistill.train.loop import compile_wanted
from rewdistill.train.sft import train_sft


def test_compile_wanted_follows_the_setting_and_the_machine(monkeypatch):
    cpu = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    assert compile_wanted("on", cpu) and not compile_wanted("off", cpu)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert compile_wanted("auto", cpu)
    assert not compile_wanted("auto", SimpleNamespace(device=torch.device("cpu"), num_processes=2))
    assert not compile_wanted("auto", SimpleNamespace(device=torch.device("cuda"), num_processes=1))
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no C++ compiler: inductor could not build kernels
    assert not compile_wanted("auto", cpu)


def test_compiled_sft_matches_eager(tmp_path, other_tokenizer, monkeypatch):
    """Same losses and weights up to rounding; compiled training runs with torch's deterministic algorithms (without
    them inductor's scatter-adds use atomics and two runs at 2 threads differed), and the setting is restored."""
    from torch._dynamo.utils import counters

    import rewdistill.train.sft as sft_module

    real, deterministic = sft_module.sft_loss, []

    def spy(*a, **k):
        deterministic.append(torch.are_deterministic_algorithms_enabled())
        return real(*a, **k)

    monkeypatch.setattr(sft_module, "sft_loss", spy)

    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    # 24 pairs of three prompt and response lengths: batches of different shapes (dynamic shapes, no recompiles)
    pairs = [([10 + q] * (2 + q % 3), [12 + (i % 3), 13] * (1 + i % 2)) for q in range(6) for i in range(4)]
    weights, losses = [], []
    for compile in (False, True):
        counters.clear()
        deterministic.clear()
        logged = []
        model = train_sft(load_causal_lm(path), pairs, 0, epochs=2, lr=1e-2, batch_size=4, warmup_frac=0.0,
                          weight_decay=0.0, accelerator=Accelerator(cpu=True), seed=0, log=logged.append,
                          compile=compile)
        assert (counters["stats"]["unique_graphs"] > 0) == compile  # the compiled run really ran compiled code
        assert set(deterministic) == {compile} and not torch.are_deterministic_algorithms_enabled()
        weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        losses.append([r["loss"] for r in logged])
    assert losses[1][-1] < losses[1][0]
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), atol=1e-4)
    for k in weights[0]:
        assert torch.allclose(weights[0][k], weights[1][k], atol=1e-4), k

"""Resumable training state: model weights (safetensors), optimiser and loop state (torch, read back with
`weights_only=True`), saved every N optimiser steps and swapped in atomically.

Layout: `<run_dir>/checkpoints/<name>/step-<N>/{<model>.safetensors, state.pt}` and `latest.json`, which names
the newest complete step directory and the stage hash it belongs to. A kill while writing leaves
`latest.json` pointing at the previous complete checkpoint; a checkpoint of another config is ignored.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from rewdistill.io import read_json, write_json


def peek(root: Path, tag: str) -> int | None:
    """Step of the usable checkpoint in `root` (same tag), or None."""
    p = root / "latest.json"
    if not p.exists():
        return None
    info = read_json(p)
    return info["step"] if info.get("tag") == tag and (root / info["dir"] / "state.pt").exists() else None


class Checkpoint:
    def __init__(self, root: Path, every: int, accelerator, tag: str):
        self.root, self.every, self.acc, self.tag = Path(root), every, accelerator, tag

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, models: dict, optims: dict, state: dict) -> None:
        """Write step `step`; then point latest.json at it; then drop older steps. Every process returns only
        once the checkpoint is complete."""
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            self._write(step, models, optims, state)
        self.acc.wait_for_everyone()

    def _write(self, step: int, models: dict, optims: dict, state: dict) -> None:
        d = self.root / f"step-{step}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for name, m in models.items():
            save_model(self.acc.unwrap_model(m), str(d / f"{name}.safetensors"))
        torch.save({"step": step, "optims": {k: o.state_dict() for k, o in optims.items()}, "state": state,
                    "torch_rng": torch.get_rng_state()}, d / "state.pt")
        write_json(self.root / "latest.json", {"step": step, "dir": d.name, "tag": self.tag})
        for old in self.root.glob("step-*"):
            if old != d:
                shutil.rmtree(old, ignore_errors=True)

    def load(self, models: dict, optims: dict) -> dict | None:
        """Restore models, optimisers and the torch RNG; returns {"step", **state}, or None when there is none."""
        step = peek(self.root, self.tag)
        if step is None:
            return None
        d = self.root / read_json(self.root / "latest.json")["dir"]
        for name, m in models.items():
            load_model(self.acc.unwrap_model(m), str(d / f"{name}.safetensors"), device=str(self.acc.device))
        st = torch.load(d / "state.pt", weights_only=True)
        for k, o in optims.items():
            o.load_state_dict(st["optims"][k])
        torch.set_rng_state(st["torch_rng"])
        return {"step": st["step"], **st["state"]}

    def clear(self) -> None:
        if self.acc.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)

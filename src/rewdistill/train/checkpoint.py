"""Resumable training state: model weights (safetensors), optimiser and loop state (torch, read back with
`weights_only=True`), saved every N optimiser steps and swapped in atomically.

Layout: `<run_dir>/checkpoints/<name>/step-<N>/{<model>.safetensors, state.pt}` and `latest.json`, which names
the newest complete step directory and the stage hash it belongs to. A kill while writing leaves
`latest.json` pointing at the previous complete checkpoint; a checkpoint of another config is ignored.

Under FSDP the weights and optimiser states are sharded: they are gathered whole with torch.distributed.checkpoint's
`get_state_dict` (every process takes part, the main process writes) and each process takes its shard back with
`set_state_dict`; such a checkpoint (`"whole": true` in state.pt) loads on any number of processes.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from rewdistill.io import read_json, write_json
from rewdistill.launch import is_fsdp


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
        once the checkpoint is complete. `models` and `optims` pair up in order (each optimiser's model)."""
        self.acc.wait_for_everyone()
        whole = gather_whole(models, optims) if is_fsdp(self.acc) else None  # a collective: every process
        if self.acc.is_main_process:
            self._write(step, models, optims, state, whole)
        self.acc.wait_for_everyone()

    def _write(self, step: int, models: dict, optims: dict, state: dict, whole: tuple | None) -> None:
        d = self.root / f"step-{step}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        if whole is not None:
            weights, opt_states = whole
            for name, sd in weights.items():  # clones: tied weights share storage, which safetensors refuses
                save_file({k: v.clone().contiguous() for k, v in sd.items()}, str(d / f"{name}.safetensors"))
        else:
            for name, m in models.items():
                save_model(self.acc.unwrap_model(m), str(d / f"{name}.safetensors"))
            opt_states = {k: o.state_dict() for k, o in optims.items()}
        torch.save({"step": step, "optims": opt_states, "state": state, "whole": whole is not None,
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
        st = torch.load(d / "state.pt", weights_only=True)
        if st.get("whole"):
            put_whole(models, optims, {n: load_file(str(d / f"{n}.safetensors")) for n in models}, st["optims"])
        elif is_fsdp(self.acc):
            raise RuntimeError(f"the checkpoint in {self.root} was written by a run without FSDP; resume it with the "
                               "launch that wrote it, or delete that folder to restart the stage under FSDP")
        else:
            for name, m in models.items():
                load_model(self.acc.unwrap_model(m), str(d / f"{name}.safetensors"), device=str(self.acc.device))
            for k, o in optims.items():
                o.load_state_dict(st["optims"][k])
        torch.set_rng_state(st["torch_rng"])
        return {"step": st["step"], **st["state"]}

    def clear(self) -> None:
        if self.acc.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)


def gather_whole(models: dict, optims: dict) -> tuple[dict, dict]:
    """Whole weights and optimiser states of FSDP-sharded models (plain tensors on the main process; empty on the
    others). A collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights, opt_states = {}, {}
    for (name, m), (k, o) in zip(models.items(), optims.items(), strict=True):
        weights[name], opt_states[k] = get_state_dict(m, o, options=opts)
    return weights, opt_states


def put_whole(models: dict, optims: dict, weights: dict, opt_states: dict) -> None:
    """Load whole weights and optimiser states (as `gather_whole` wrote them) into models that may be sharded:
    each process keeps its shard."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    opts = StateDictOptions(full_state_dict=True)
    for (name, m), (k, o) in zip(models.items(), optims.items(), strict=True):
        set_state_dict(m, o, model_state_dict=weights[name], optim_state_dict=opt_states[k], options=opts)

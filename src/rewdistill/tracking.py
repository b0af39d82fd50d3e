"""Experiment trackers (`log.trackers`, `--log.with`): accelerate's TensorBoard / Weights & Biases / MLflow trackers
get every metric row a stage writes to its JSONL file (as `<stage>/<key>` scalars at the row's step) and the run
config as hyper-parameters. Main process only; the JSONL files stay the source of truth."""
from __future__ import annotations

import os
from pathlib import Path

from rewdistill.config import Config


def flat_config(cfg: Config) -> dict:
    """{dotted key: bool | int | float | str} (lists and None as strings), as trackers take hyper-parameters."""
    out = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v if isinstance(v, (bool, int, float, str)) else str(v)

    walk(cfg.model_dump(), "")
    return out


class Trackers:
    def __init__(self, cfg: Config, run_dir: Path):
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        self.trackers = []
        for name in cfg.log.trackers:
            if name == "tensorboard":
                t = TensorBoardTracker(run_name="tensorboard", logging_dir=run_dir / "logs")
            elif name == "wandb":
                os.environ.setdefault("WANDB_MODE", "offline")  # offline unless the user's environment says so
                t = WandBTracker(run_name=run_dir.name, dir=str(run_dir / "logs"))
            else:
                t = MLflowTracker(experiment_name="rewdistill", logging_dir=str(run_dir / "logs" / "mlruns"),
                                  run_name=run_dir.name)
            try:
                t.start()
            except ImportError as e:
                raise RuntimeError(f"log.trackers {name}: {e}; pip install {name}") from None
            t.store_init_configuration(flat_config(cfg))
            self.trackers.append(t)

    def log(self, stage: str, row: dict) -> None:
        values = {f"{stage}/{k}": v for k, v in row.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        if not values:
            return
        for t in self.trackers:
            if t.name == "wandb":  # wandb drops a step lower than its last: each stage's steps start at 1 again
                t.log({**values, f"{stage}/step": row.get("step")})
            else:
                t.log(values, step=row.get("step"))

    def finish(self) -> None:
        for t in self.trackers:
            t.finish()

"""rewdistill: distill both data and rewards from a large language model into a small one.

The Python API, for notebooks and scripts (the CLI calls the same functions; see docs/python-api.md):

    import rewdistill
    cfg = rewdistill.load_config(overrides={"task.name": "tiny-choice", "rl.steps": 10})
    rewdistill.run(cfg, "runs/notebook")               # every stage; finished ones are skipped on a rerun
    rewdistill.run(cfg, "runs/notebook", until="sft")  # up to and including one stage
    res = rewdistill.results("runs/notebook")          # results.json as a dict
"""
from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "run", "results", "STAGES"]

STAGES = ["teacher-sample", "pseudo-label", "sft", "student-sample", "reward-model", "rl", "evaluate"]


def __getattr__(name: str):
    if name == "Config":  # imported lazily: `import rewdistill` stays light
        from rewdistill.config import Config

        return Config
    raise AttributeError(f"module 'rewdistill' has no attribute {name!r}")


def load_config(config: str | Path | None = None, overrides: dict | None = None):
    """The run config: defaults, then a YAML file or shipped config name (`config`), then `overrides`, a dict of
    dotted keys ({"rl.kl_coef": 0.05, "task.name": "tiny-arith"}; values as Python objects or CLI strings).
    Raises `rewdistill.config.ConfigError` with a one-line message on a bad key or value."""
    import yaml

    from rewdistill.config_files import load_config as _load

    flat = {k: v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...")
            .strip() for k, v in (overrides or {}).items()}
    return _load(str(config) if config is not None else None, flat)


def run(cfg, run_dir: str | Path, until: str | None = None, force: bool = False) -> dict:
    """Run the pipeline of `cfg` in `run_dir` up to and including stage `until` (a name of `STAGES`, or
    `rl@2` for a later round; default: all). Finished stages with the same config are skipped; `force` reruns
    stages whose config changed. Returns the manifest (per stage: hash, done, seconds, summary, files)."""
    from rewdistill.pipeline import run_pipeline

    return run_pipeline(cfg, Path(run_dir), until, force=force)  # an unknown `until`: ConfigError (check_until)


def results(run_dir: str | Path) -> dict:
    """A finished run's results.json (accuracies, diagnostics, seconds per stage) as a dict."""
    from rewdistill.io import read_json

    return read_json(Path(run_dir) / "results.json")

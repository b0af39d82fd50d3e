"""What a launch (`accelerate launch` / `torchrun`) asks of the run, checked before any stage runs."""
from __future__ import annotations

import torch

from rewdistill.config import Config, ConfigError


def check_engine(cfg: Config) -> None:
    """Refuse, before anything runs, a sharding engine that this launch cannot give: accelerate turns FSDP and
    DeepSpeed on only for GPUs / accelerators (on CPU processes it would silently train with plain DDP), and
    DeepSpeed must be importable."""
    import importlib.util

    import accelerate
    from accelerate.utils import parse_flag_from_env

    on_cpu = not torch.cuda.is_available() or cfg.models.device == "cpu"
    for env, name in [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")]:
        if not parse_flag_from_env(env):
            continue
        if name == "DeepSpeed" and importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("the launch asks for DeepSpeed (ACCELERATE_USE_DEEPSPEED), which is not installed: "
                              "pip install deepspeed, or launch with configs/accelerate/ddp.yaml or fsdp.yaml")
        if on_cpu:
            raise ConfigError(f"the launch asks for {name} ({env}), but this run is on CPU, where accelerate "
                              f"{accelerate.__version__} does not shard and would train with plain DDP instead: "
                              "launch with configs/accelerate/ddp.yaml on CPU, or run this config on GPUs")

"""What a launch (`accelerate launch` / `torchrun`) asks of the run: checked before any stage runs, and applied to
every stage's Accelerator.

FSDP on CPU processes: accelerate turns FSDP on only for GPUs / accelerators; on CPU processes (gloo) it would
train with plain DDP without saying so. PyTorch's FSDP2 (`fully_shard`) runs on CPU, so `use_launched_engine` hands
the launch's FSDP plugin (the `FSDP_*` variables `accelerate launch --config_file fsdp.yaml` sets) to the
Accelerator itself: the same accelerate code path (`fsdp2_prepare_model`, `get_state_dict`) as on GPUs.

At the end, `close_processes` closes the process group and `exit_process` ends a launched process without the
interpreter's finalization, where gloo's threads can abort a finished run.
"""
from __future__ import annotations

import os
import sys

import torch

from rewdistill.config import Config, ConfigError


def fsdp_asked() -> bool:
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_FSDP")


def check_engine(cfg: Config) -> None:
    """Refuse, before anything runs, a sharding engine that this launch cannot give: FSDP 1 on CPU processes (FSDP 2
    is handed to accelerate by `use_launched_engine`), DeepSpeed on CPU (accelerate counts one process per rank
    there) or without `deepspeed` installed."""
    import importlib.util

    import accelerate
    from accelerate.utils import parse_flag_from_env

    on_cpu = not torch.cuda.is_available() or cfg.models.device == "cpu"
    if fsdp_asked() and on_cpu and os.environ.get("FSDP_VERSION", "1") != "2":
        raise ConfigError(f"the launch asks for FSDP version {os.environ.get('FSDP_VERSION', '1')} on CPU processes, "
                          "where only FSDP 2 (fully_shard) runs: set fsdp_version: 2 in the accelerate config (as "
                          "configs/accelerate/fsdp.yaml does)")
    if parse_flag_from_env("ACCELERATE_USE_DEEPSPEED"):
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("the launch asks for DeepSpeed (ACCELERATE_USE_DEEPSPEED), which is not installed: "
                              "pip install deepspeed, or launch with configs/accelerate/ddp.yaml or fsdp.yaml")
        if on_cpu:
            raise ConfigError(f"the launch asks for DeepSpeed (ACCELERATE_USE_DEEPSPEED), but this run is on CPU, "
                              f"where accelerate {accelerate.__version__} counts one process per rank under "
                              "DeepSpeed (it would train every rank on the whole batch): launch with "
                              "configs/accelerate/fsdp.yaml or ddp.yaml on CPU, or run this config on GPUs")


def use_launched_engine(acc) -> None:
    """Under an FSDP launch on CPU processes, make `acc` (MULTI_CPU, gloo) an FSDP 2 Accelerator: the plugin is
    built from the launch's FSDP_* variables, as accelerate builds it on GPUs (every stage's fresh Accelerator: a
    reset keeps PartialState's FSDP type but drops the plugin). Anything else: untouched."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_asked() or acc.device.type != "cpu" or acc.num_processes < 2:
        return  # on accelerators, accelerate sets FSDP up itself
    state = AcceleratorState()
    state.fsdp_plugin = FullyShardedDataParallelPlugin()  # reads FSDP_VERSION, FSDP_AUTO_WRAP_POLICY, ...
    if acc.mixed_precision != "no":  # as accelerate does for its own FSDP state (not verified on CPU)
        state.fsdp_plugin.set_mixed_precision(acc.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def is_fsdp(acc) -> bool:
    from accelerate.utils import DistributedType

    return acc.distributed_type == DistributedType.FSDP


def sharding_note(acc, model, name: str) -> str | None:
    """One line saying how much of `model` this process holds under FSDP (None otherwise): the run's evidence that
    the parameters really are sharded."""
    if not is_fsdp(acc):
        return None
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    whole = sum(p.numel() for p in params)  # a DTensor's numel is the whole tensor's
    held = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params)
    return (f"{name}: FSDP {acc.state.fsdp_plugin.fsdp_version} over {acc.num_processes} processes; process "
            f"{acc.process_index} holds {held:,} of {whole:,} parameter values")


_closed = False  # this process ran in a process group, now closed: `exit_process` ends it without finalizing


def close_processes() -> None:
    """End a multi-process run cleanly: every process waits for the others, then the process group is closed."""
    global _closed
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        td.barrier()
        td.destroy_process_group()
        _closed = True


def in_process_group() -> bool:
    """This process joined a process group (open now, or closed by `close_processes`)."""
    if _closed:
        return True
    import torch.distributed as td

    return td.is_available() and td.is_initialized()


def exit_process(code: int) -> None:
    """Leave with `code`. In a process group, skip the interpreter's finalization (os._exit, once output is
    flushed): gloo's worker threads outlive destroy_process_group (gloo has no shutdown) and one may still be
    releasing a finished collective's tensors, which needs the GIL; while the main thread finalizes, that thread is
    killed inside a C++ destructor and the process aborts ("terminate called without an active exception", SIGABRT)
    although the run succeeded. Seen under CPU load, a few runs in twenty (tests/test_fsdp.py in CI)."""
    if not in_process_group():
        sys.exit(code)
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more to keep
            pass
    os._exit(code)

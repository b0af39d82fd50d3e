"""Tasks by name: the tiny generated ones, the paper's benchmarks, and the user's own JSONL."""
from rewdistill.tasks.base import Example, Task
from rewdistill.tasks.gsm8k import GSM8K
from rewdistill.tasks.jsonl_task import JsonlTask
from rewdistill.tasks.mmlu_pro import MMLUPro
from rewdistill.tasks.rows import DataError
from rewdistill.tasks.tiny_arith import TinyArith
from rewdistill.tasks.tiny_choice import TinyChoice

TASKS = {"tiny-arith": TinyArith, "tiny-choice": TinyChoice, "gsm8k": GSM8K, "mmlu-pro": MMLUPro, "jsonl": JsonlTask}
TINY = ("tiny-arith", "tiny-choice")


def get_task(name: str, data_seed: int = 0, **opts) -> Task:
    """A task by name; `opts` (path, n_validation, bad_rows, ...) go to file-backed tasks only."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    if name in TINY:
        return TASKS[name](data_seed=data_seed)
    return TASKS[name](data_seed=data_seed, **opts)


def task_from_config(tc) -> Task:
    """The task a `TaskCfg` describes."""
    return get_task(tc.name, tc.data_seed, path=tc.path, n_validation=tc.n_validation, n_heldout=tc.n_heldout,
                    bad_rows=tc.bad_rows, num_fewshot=tc.num_fewshot, answer_mode=tc.answer_mode,
                    answer_type=tc.answer_type)


__all__ = ["DataError", "Example", "Task", "TASKS", "get_task", "task_from_config"]

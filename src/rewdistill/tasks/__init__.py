"""Tasks by name."""
from rewdistill.tasks.base import Example, Task
from rewdistill.tasks.tiny_arith import TinyArith
from rewdistill.tasks.tiny_choice import TinyChoice

TASKS = {"tiny-arith": TinyArith, "tiny-choice": TinyChoice}


def get_task(name: str, data_seed: int = 0) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name](data_seed=data_seed)


__all__ = ["Example", "Task", "TASKS", "get_task"]

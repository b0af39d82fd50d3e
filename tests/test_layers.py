"""The layering of `src/rewdistill` (README, Architecture): each layer imports only the layers below it.

An `ast` walk over every module: imports inside functions count too, so a lazy import cannot hide a crossing.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "rewdistill"

# lowest first; a module may import modules of its own layer or of a lower one
LAYERS = [
    ("algo", ["algo"]),
    ("core", ["config", "config_files", "io", "faults", "artifacts", "launch"]),
    ("tasks", ["tasks"]),
    ("models", ["models"]),
    ("sampling", ["sampling"]),
    ("train", ["train", "labels"]),
    ("diagnostics", ["diagnostics"]),  # reads gold: nothing that trains may import it
    ("stages", ["stages", "pipeline", "stage_list", "rundir", "report", "compare", "cards", "tracking"]),
    ("faces", ["cli", "cli_runs", "ablate", "grade", "hub", "__init__"]),
]
FACES = {"faces"}
ALGO_MAY_IMPORT = {"torch", "__future__", "collections", "math", "typing", "dataclasses"}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return ".".join(rel.parts)


def layer_of(module: str) -> int:
    """Index in LAYERS of a module path relative to the package (`stages.rl`, `io`, `__init__`)."""
    head = module.split(".")[0]
    for i, (_, prefixes) in enumerate(LAYERS):
        if head in prefixes:
            return i
    raise AssertionError(f"module rewdistill.{module} is in no layer of tests/test_layers.py; add it there and to the "
                         "README's architecture section")


def is_module(src: Path, dotted: str) -> bool:
    """Whether `rewdistill.<dotted>` is a module or package of the source tree `src`."""
    rel = Path(*dotted.split("."))
    return (src / rel).with_suffix(".py").exists() or (src / rel / "__init__.py").exists()


def imports_of(path: Path, me: str = "", src: Path = SRC) -> list[tuple[int, str]]:
    """(line, imported module) of every import in the file (module `me` of the tree `src`): relative imports are
    resolved, and `from package import module` counts as importing that module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    package = me.split(".")[:-1] if path.name != "__init__.py" else me.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's package, `level - 1` packages up
                parts = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
                base = "rewdistill." + ".".join(p for p in parts if p and p != "__init__")
            else:
                base = node.module or ""
            for a in node.names:
                inner = f"{base}.{a.name}"[len("rewdistill."):] if base.startswith("rewdistill") else ""
                if base.startswith("rewdistill") and is_module(src, inner):
                    out.append((node.lineno, f"{base}.{a.name}"))
                else:
                    out.append((node.lineno, base))
    return [(line, mod.rstrip(".")) for line, mod in out]


def violations(src: Path = SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        me = module_name_in(src, path)
        mine = layer_of(me)
        for line, mod in imports_of(path, me, src):
            where = f"{path.relative_to(src.parent)}:{line}"
            if LAYERS[mine][0] == "algo" and mod.split(".")[0] not in ALGO_MAY_IMPORT and not mod.startswith(
                    "rewdistill.algo"):
                found.append(f"{where}: algo imports {mod} (algo imports torch only)")
            if not mod.startswith("rewdistill."):
                continue
            other = mod[len("rewdistill."):] or "__init__"
            if layer_of(other) > mine:
                found.append(f"{where}: {LAYERS[mine][0]} module rewdistill.{me} imports rewdistill.{other}, "
                             f"of the higher layer {LAYERS[layer_of(other)][0]}")
            if me.startswith("stages.") and other.startswith("stages.") and not other.startswith("stages.common") \
                    and other != me:  # stages/common*.py: helpers shared by stages, not stages
                found.append(f"{where}: stage rewdistill.{me} imports another stage, rewdistill.{other}")
    return found


def module_name_in(src: Path, path: Path) -> str:
    return ".".join(path.relative_to(src).with_suffix("").parts)


def prints(src: Path = SRC) -> list[str]:
    """print() calls below the faces (only the CLI and the other faces talk to the terminal; the rest logs)."""
    found = []
    for path in sorted(src.rglob("*.py")):
        if LAYERS[layer_of(module_name_in(src, path))][0] in FACES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{path.relative_to(src.parent)}:{node.lineno}: print() below the CLI; use logging")
    return found


def test_every_import_follows_the_layers():
    assert violations() == []


def test_nothing_below_the_faces_prints():
    assert prints() == []


@pytest.mark.parametrize("file, line, expect", [
    ("sampling/hf.py", "from rewdistill.train.common import save_pretrained\n", "of the higher layer train"),
    ("algo/losses.py", "import numpy\n", "algo imports numpy"),
    ("tasks/base.py", "from rewdistill.models.load import resolve\n", "of the higher layer models"),
    ("stages/rl.py", "from rewdistill.stages.sft import run\n", "imports another stage"),
    ("train/sft.py", "    from rewdistill.stages.common import Ctx\n", "of the higher layer stages"),
    ("stages/rl.py", "from rewdistill.stages import sft\n", "imports another stage"),
    ("stages/rl.py", "from . import evaluate\n", "imports another stage"),
    ("train/rl_loop.py", "from ..diagnostics import auc\n", "of the higher layer diagnostics"),
])
def test_a_forbidden_import_is_caught(tmp_path, file, line, expect):
    """The checker sees a crossing added to a copy of the source (also one inside a function)."""
    import shutil

    copy = tmp_path / "rewdistill"
    shutil.copytree(SRC, copy)
    target = copy / file
    text = target.read_text(encoding="utf-8")
    if line.startswith("    "):  # inside the first function
        head, sep, rest = text.partition("\ndef ")
        name, colon_nl, body = rest.partition(":\n")
        text = head + sep + name + colon_nl + line + body
    else:
        text = text + "\n" + line
    target.write_text(text, encoding="utf-8")
    found = violations(copy)
    assert any(expect in v and file in v for v in found), found


def test_a_print_is_caught(tmp_path):
    import shutil

    copy = tmp_path / "rewdistill"
    shutil.copytree(SRC, copy)
    (copy / "train" / "common.py").write_text((copy / "train" / "common.py").read_text() + "\nprint('hi')\n")
    assert any("train/common.py" in p for p in prints(copy))


TRAINING_STAGES = ["common", "common_selection", "teacher_sample", "pseudo_label", "sft", "student_sample",
                   "reward_model", "rl"]


def gold_reads(path: Path) -> list[tuple[int, str]]:
    """(line, code) of every `<x>.load(...)` call (a task's split WITH gold) and every `.answer` read in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            out.append((node.lineno, ast.unparse(node)))
        if isinstance(node, ast.Attribute) and node.attr == "answer":
            out.append((node.lineno, ast.unparse(node)))
    return out


def test_training_stages_read_no_gold_but_the_labelled_oracle():
    """Training stages work with `task.questions(split)` (no answers); the one exception is the `gold` oracle reward
    in stages/rl.py, inside the branch `cfg.reward == "gold"`."""
    found = {name: gold_reads(SRC / "stages" / f"{name}.py") for name in TRAINING_STAGES}
    for path in [*sorted((SRC / "train").glob("*.py")), SRC / "labels.py", *sorted((SRC / "sampling").glob("*.py"))]:
        found[str(path.relative_to(SRC))] = [g for g in gold_reads(path)  # checkpoint loads are not a task's split
                                             if not g[1].startswith(("ckpt.load(", "torch.load("))]
    rl = found.pop("rl")
    assert all(not v for v in found.values()), found
    oracle = [line for line, _ in rl]
    text = (SRC / "stages" / "rl.py").read_text(encoding="utf-8").splitlines()
    branch = next(i for i, t in enumerate(text, start=1) if 'cfg.reward == "gold"' in t)
    assert rl and all(branch < line <= branch + 3 for line in oracle), rl

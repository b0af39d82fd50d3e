"""What every benchmark JSON records about where its numbers come from: the commit measured and the teacher."""
from __future__ import annotations

import subprocess


def git_commit() -> str | None:
    """The commit measured (suffixed `-dirty` when tracked files have uncommitted changes), or None outside git."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent  # the repository measured, wherever the script is run from
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=repo)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=repo).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def teacher_of(run_dir) -> str | None:
    """`models.teacher` of a finished run (its config.yaml), with the commit whose zoo it is when it is `zoo:`."""
    from pathlib import Path

    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return None
    teacher = yaml.safe_load(path.read_text())["models"]["teacher"]
    return f"{teacher} (as shipped at {git_commit()})" if str(teacher).startswith("zoo:") else str(teacher)

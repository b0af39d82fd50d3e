"""`rewdistill run --push_to_hub ORG/NAME`: upload the run's final student (the last round's student_rl/, with its
model card) to the Hugging Face Hub. Private unless asked otherwise; the token is read from the environment
(HF_TOKEN, or huggingface_hub's own login) and never logged."""
from __future__ import annotations

import os
from pathlib import Path

from rewdistill.io import read_json


def final_student(run_dir: Path) -> Path:
    rounds = read_json(run_dir / "results.json")["rl"]["rounds"]
    return run_dir / ("student_rl" if rounds == 1 else f"round{rounds}/student_rl")


def push_to_hub(run_dir: Path, repo_id: str, private: bool = True, api=None) -> str:
    """Create (or reuse) the model repo and upload the final student's folder; returns the repo's URL."""
    if api is None:
        try:
            from huggingface_hub import HfApi
        except ImportError:
            raise RuntimeError("--push_to_hub needs huggingface_hub: pip install huggingface_hub") from None
        api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    folder = final_student(run_dir)
    if not (folder / "README.md").exists():
        raise RuntimeError(f"{folder} has no model card: finish the run (evaluate writes it) before pushing")
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=f"rewdistill: final student of {run_dir.name}")
    except Exception as e:  # HTTP errors, no network, no token: one line (the token is never in the message)
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        raise RuntimeError(f"--push_to_hub {repo_id}: {type(e).__name__}: {lines[0] if lines else ''} (the run "
                           "itself is finished and kept; check HF_TOKEN and the repo name, then rerun with "
                           "--push_to_hub)") from None
    return str(url)

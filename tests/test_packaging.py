"""What a non-editable install ships (a wheel built from this tree) and what pyproject.toml says."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"gsm8k-qwen2.5-7b-to-0.5b", "mmlu-pro-llama3.1-8b-to-3.2-1b", "tiny-arith"}


def test_wheel_ships_the_configs_and_finds_them_by_name(tmp_path):
    """Build a wheel of a copy of the tree (never in place), install it into a temporary venv and load a shipped
    config by its bare name from a directory that has no configs/."""
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "-w", str(dist), str(src)], check=True, timeout=45, cwd=tmp_path)
    wheel = next(dist.glob("rewdistill-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).stem for n in names if n.startswith("rewdistill/configs/") and n.endswith(".yaml")}
    assert shipped == SHIPPED, sorted(n for n in names if "config" in n)
    venv = tmp_path / "venv"  # a fresh venv; the wheel is installed into it, its dependencies come from ours
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True,
                   timeout=120)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages")]
    (Path(site) / "deps_from_test_env.pth").write_text("\n".join(ours) + "\n")  # after the venv's own packages
    work = tmp_path / "elsewhere"
    work.mkdir()
    code = ("import sys, rewdistill; from rewdistill.config_files import load_config, shipped_configs; "
            "assert rewdistill.__file__.startswith(sys.argv[1]), rewdistill.__file__; "
            "print(sorted(shipped_configs())); "
            "print(load_config('gsm8k-qwen2.5-7b-to-0.5b', {}).task.name, "
            "load_config('mmlu-pro-llama3.1-8b-to-3.2-1b.yaml', {}).task.name)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    out = subprocess.run([str(py), "-c", code, site], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(sorted(SHIPPED)), "gsm8k mmlu-pro"]


def _extras_comments() -> dict[str, str]:
    """extra name -> its comment, from the [project.optional-dependencies] table of pyproject.toml."""
    out, inside = {}, False
    for line in (ROOT / "pyproject.toml").read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            inside = line.strip() == "[project.optional-dependencies]"
        elif inside and "=" in line:
            name = line.split("=", 1)[0].strip()
            out[name] = line.split("#", 1)[1].strip() if "#" in line else ""
    return out


def test_extras_comments_describe_their_own_extra():
    c = _extras_comments()
    assert "vllm" in c["vllm"].lower() and "lora" not in c["vllm"].lower(), c["vllm"]
    assert "lora" in c["lora"].lower() and "vllm" not in c["lora"].lower(), c["lora"]

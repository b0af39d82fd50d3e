"""GGUF checkpoints: clear one-line errors (the conversion itself runs on a real model in tests/test_real.py)."""
from __future__ import annotations

import builtins

import pytest

from rewdistill.cli import main
from rewdistill.models import gguf
from tests.conftest import MICRO


def run_with_teacher(tmp_path, path, capsys) -> tuple[int, list[str]]:
    code = main(["run", "--run-dir", str(tmp_path / "run"), *MICRO, "--models.teacher", str(path)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_missing_or_corrupt_gguf_file_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REWDISTILL_CACHE", str(tmp_path / "cache"))
    code, err = run_with_teacher(tmp_path, tmp_path / "nope.gguf", capsys)
    assert code == 1 and len(err) == 1 and "nope.gguf: no such GGUF file" in err[0]
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    code, err = run_with_teacher(tmp_path, bad, capsys)
    import importlib.util

    want = "transformers cannot read this GGUF file" if importlib.util.find_spec("gguf") else \
        "needs the gguf package"  # the main suite runs without the optional package
    assert code == 1 and len(err) == 1 and "broken.gguf" in err[0] and want in err[0], err
    assert not list((tmp_path / "cache").rglob("config.json"))  # nothing half-converted is cached


def test_the_gguf_package_missing_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REWDISTILL_CACHE", str(tmp_path / "cache"))
    gguf._converted.cache_clear()
    real_import = builtins.__import__

    def no_gguf(name, *a, **kw):
        if name == "gguf":
            raise ImportError("No module named 'gguf'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_gguf)
    f = tmp_path / "model.gguf"
    f.write_bytes(b"GGUF")
    code, err = run_with_teacher(tmp_path, f, capsys)
    assert code == 1 and len(err) == 1 and "pip install 'rewdistill[gguf]'" in err[0]


@pytest.fixture(autouse=True)
def _fresh_cache():
    gguf._converted.cache_clear()
    yield
    gguf._converted.cache_clear()

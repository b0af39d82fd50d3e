"""io.py: the JSON / JSONL helpers every module writes through."""
from __future__ import annotations

import json

from rewdistill import io
from rewdistill.io import read_jsonl, read_jsonl_prefix, write_jsonl


def test_append_jsonl_is_append_only_and_survives_a_torn_line(tmp_path):
    p = tmp_path / "cache.jsonl"
    io.append_jsonl(p, [{"a": 1}])
    io.append_jsonl(p, [{"a": 2}, {"a": 3}])
    assert read_jsonl(p) == [{"a": 1}, {"a": 2}, {"a": 3}]
    with open(p, "a", encoding="utf-8") as f:
        f.write('{"a": 4')  # a crash mid-write
    io.append_jsonl(p, [{"a": 5}])
    lines = p.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == [json.dumps({"a": i}) for i in (1, 2, 3)]
    assert lines[3] == '{"a": 4' and json.loads(lines[4]) == {"a": 5}  # the new row is not glued to the torn one


def test_write_jsonl_ensure_ascii_option(tmp_path):
    p = tmp_path / "x.jsonl"
    write_jsonl(p, [{"t": "café"}])
    assert "\\u00e9" in p.read_text(encoding="utf-8")
    write_jsonl(p, [{"t": "café"}], ensure_ascii=False)
    assert "café" in p.read_text(encoding="utf-8") and read_jsonl_prefix(p) == [{"t": "café"}]


def test_report_reads_and_writes_through_io(tmp_path, monkeypatch):
    from rewdistill import report

    calls = []
    monkeypatch.setattr(report, "read_jsonl_prefix", lambda p: calls.append(p) or [])
    assert report.plot_rl(tmp_path) is None and calls == [tmp_path / "rl_metrics.jsonl"]
    written = []
    monkeypatch.setattr(report, "write_text_atomic", lambda p, t: written.append(p))
    monkeypatch.setattr(report, "plot_accuracy", lambda run_dir, results: "accuracy.png")
    results = {"task": "tiny-arith", "seed": 0, "n_test": 1, "split": "test", "accuracy": {"student_sft": 0.5},
               "diagnostics": {"pseudo_label_accuracy_kept": None, "questions_kept": 0, "questions_total": 0,
                               "pseudo_label_accuracy_all": None, "reward_model_eval_responses": 0,
                               "reward_model_accuracy": None, "reward_model_auc": None}}
    from rewdistill.config import Config

    report.write_report(tmp_path, results, Config())
    assert written == [tmp_path / "report.md"]


def test_openai_cache_resumes_after_a_torn_line_without_losing_the_next_row(tmp_path):
    """The sampler's cache is append-only (through io.append_jsonl): after a crash mid-line, the rerun's first
    answer is not glued to the torn line, so a third run asks for nothing."""
    import pytest

    from rewdistill.config import OpenAICfg
    from rewdistill.sampling.openai_api import BackendError, OpenAISampler, read_cache
    from tests.openai_server import TinyOpenAIServer

    prompts = [f"Question: Tom has {i} apples and gets 2 more. How many now?\nAnswer:" for i in range(3)]
    cfg = OpenAICfg(concurrency=1, n_per_request=2, backoff_s=0.01, timeout_s=30, max_retries=1)
    cache = tmp_path / "c.jsonl"

    def run(**server_kw):
        server = TinyOpenAIServer("zoo:teacher", **server_kw)
        try:
            OpenAISampler(cfg.model_copy(update={"base_url": server.url}), "tiny", cache).generate(
                prompts, 0.8, n=4, max_new_tokens=8)
        finally:
            server.close()
        return server.requests

    with pytest.raises(BackendError):
        run(stop_after=2)
    assert len(read_cache(cache)) == 2
    with open(cache, "a", encoding="utf-8") as f:
        f.write('{"key": "torn')
    assert run() == 4
    assert len(read_cache(cache)) == 6
    assert run() == 0

"""The openai backend against a real HTTP server on loopback: retries, resume after the server dies, keys."""
from __future__ import annotations

import json

import pytest

from rewdistill.cli import main
from rewdistill.config import OpenAICfg
from rewdistill.sampling.openai_api import BackendError, OpenAISampler, read_cache
from tests.conftest import MICRO
from tests.openai_server import TinyOpenAIServer

PROMPTS = [f"Question: Tom has {i} apples and gets {i + 2} more. How many now?\nAnswer:" for i in range(5)]


def sampler(url, cache, **kw):
    kw = {"max_retries": 3, **kw}
    cfg = OpenAICfg(base_url=url, concurrency=3, n_per_request=2, backoff_s=0.01, timeout_s=30, **kw)
    return OpenAISampler(cfg, "tiny", cache)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_retries_failed_requests(tmp_path, endpoint):
    server = TinyOpenAIServer("zoo:teacher", fail_every=3)
    try:
        gens = sampler(server.url, tmp_path / "c.jsonl", endpoint=endpoint, max_retries=12).generate(
            PROMPTS, 1.0, n=4, max_new_tokens=24)
    finally:
        server.close()
    assert [g.prompt_index for g in gens] == [i for i in range(5) for _ in range(4)]
    assert all(g.text.strip() for g in gens) and server.answered == 10 and server.requests > 10  # 503s were retried
    assert len(read_cache(tmp_path / "c.jsonl")) == 10


def test_resumes_after_the_server_stops_and_asks_only_for_what_is_missing(tmp_path):
    cache = tmp_path / "c.jsonl"
    dying = TinyOpenAIServer("zoo:teacher", stop_after=4)
    with pytest.raises(BackendError, match="request failed after 4 tries.*rerun to continue"):
        sampler(dying.url, cache).generate(PROMPTS, 0.8, n=4, max_new_tokens=24)
    dying.close()
    done = read_cache(cache)
    assert len(done) == 4
    with open(cache, "a") as f:
        f.write('{"key": "torn')  # a crash mid-write leaves a torn line: dropped on resume
    fresh = TinyOpenAIServer("zoo:teacher")
    try:
        gens = sampler(fresh.url, cache).generate(PROMPTS, 0.8, n=4, max_new_tokens=24)
    finally:
        fresh.close()
    assert fresh.requests == 6 and len(gens) == 20
    assert all(read_cache(cache)[k]["texts"] == v["texts"] for k, v in done.items())


def test_bad_key_fails_at_once_without_showing_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_KEY", "sk-wrong-123")
    server = TinyOpenAIServer("zoo:teacher", api_key="sk-right-456")
    try:
        with pytest.raises(BackendError) as e:
            sampler(server.url, None, api_key_env="TINY_KEY").generate(PROMPTS[:1], 1.0, n=2, max_new_tokens=8)
    finally:
        server.close()
    assert "HTTP 401" in str(e.value) and "sk-" not in str(e.value) and server.requests == 1
    monkeypatch.delenv("TINY_KEY")
    with pytest.raises(BackendError, match="'TINY_KEY' but that environment variable is not set"):
        sampler(server.url, None, api_key_env="TINY_KEY")


def test_pipeline_with_an_openai_teacher_keeps_the_key_out_of_the_run(tmp_path, monkeypatch, capsys, caplog):
    key = "sk-secret-789xyz"
    monkeypatch.setenv("RD_TEST_KEY", key)
    server = TinyOpenAIServer("zoo:teacher", api_key=key, fail_every=7)
    run_dir = tmp_path / "run"
    try:
        rc = main(["run", "--run-dir", str(run_dir), *MICRO, "--models.teacher_backend", "openai",
                   "--openai.base_url", server.url, "--openai.api_key_env", "RD_TEST_KEY",
                   "--openai.endpoint", "completions", "--openai.backoff_s", "0.01",
                   "--openai.max_retries", "12"])
    finally:
        server.close()
    assert rc == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert 0 <= res["accuracy"]["teacher_greedy"] <= 1 and server.answered > 0
    assert all(a == f"Bearer {key}" for a in server.seen_auth)
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert key.encode() not in f.read_bytes(), f
    out = capsys.readouterr()
    assert key not in out.out + out.err + caplog.text
    assert "RD_TEST_KEY" in (run_dir / "config.yaml").read_text()


def test_vllm_backend_missing_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed here; the missing-package message cannot be shown")
    except ImportError:
        pass
    rc = main(["run", "--run-dir", str(tmp_path / "r"), *MICRO, "--models.teacher_backend", "vllm"])
    err = capsys.readouterr().err
    assert rc == 1 and "pip install vllm" in err and err.count("\n") == 1


def test_judge_parsing():
    from rewdistill.labels import parse_score

    assert parse_score("fine\nScore: 8") == 8.0 and parse_score("Score: 11\nScore: 4") == 4.0
    assert parse_score("**Score:** [[3]]/10") == 3.0 and parse_score("I'd give it 7/10.") == 7.0
    assert parse_score("Rating: 9") == 9.0 and parse_score("It is right, 42 apples.") is None
    assert parse_score("Score: 0") is None  # outside 1..10: unparsable, never clamped


def test_text_task_pseudo_labels_come_from_the_llm_judge(tmp_path):
    """A jsonl `text` task end to end; the teacher (served over HTTP) samples and judges; the judge here is a
    rule (score 9 when the response mentions a digit 1, else 2; some judgements unparsable)."""
    d = tmp_path / "own"
    d.mkdir()
    rows = [{"question": f"Tom has {i} apples and gets {i + 1} more. How many?", "answer": str(2 * i + 1)}
            for i in range(40)]
    for name, part in (("train", rows[:24]), ("test", rows[24:])):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    calls = []

    def judge(prompt):
        calls.append(prompt)
        response = prompt.split("[Response]")[1].split("[Your judgement]")[0]
        return "no idea" if len(calls) % 5 == 0 else f"Checked.\nScore: {9 if '1' in response else 2}"

    server = TinyOpenAIServer("zoo:teacher", judge=judge)
    run_dir = tmp_path / "run"
    try:
        rc = main(["run", "--run-dir", str(run_dir), *MICRO, "--task.name", "jsonl", "--task.path", str(d),
                   "--task.answer_type", "text", "--task.n_validation", "4", "--models.teacher_backend", "openai",
                   "--openai.base_url", server.url, "--pseudo_label.min_vote_share", "0.1"])
    finally:
        server.close()
    assert rc == 0
    stats = json.loads((run_dir / "pseudo_label_stats.json").read_text())
    assert stats["method"] == "judge" and stats["judge_unparsable"] > 0
    labelled = [json.loads(line) for line in (run_dir / "teacher_labelled.jsonl").read_text().splitlines()]
    assert all(r["label"] == int(r["judge_score"] >= 7) for r in labelled)
    student = [json.loads(line) for line in (run_dir / "student_samples.jsonl").read_text().splitlines()]
    assert student and all("judge_score" in r for r in student)  # the student's responses are judged too
    assert "response_label_accuracy" in json.loads((run_dir / "results.json").read_text())["diagnostics"]


def test_vllm_sampler_maps_our_call_onto_vllm(monkeypatch, tmp_path):
    """vLLM is not installable here (no CUDA): a stand-in module records what our sampler asks of vLLM's
    documented API (LLM(...), SamplingParams(...), llm.generate) and how the outputs are mapped back."""
    import sys
    import types

    from rewdistill.config import VLLMCfg
    from rewdistill.models.load import load_prompt_format
    from rewdistill.sampling.backends import VLLMSampler

    seen = {}

    class LLM:
        def __init__(self, **kw):
            seen["llm"] = kw

        def generate(self, prompts, params, use_tqdm=False):
            seen["prompts"], seen["params"] = prompts, params

            def out(k):
                return types.SimpleNamespace(text=f" r{k}", token_ids=[5, k], finish_reason="stop" if k else "length")

            return [types.SimpleNamespace(outputs=[out(k) for k in range(params.n)]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm",
                        types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw)))
    tok = load_prompt_format("zoo:teacher")
    s = VLLMSampler("/models/x", tok, VLLMCfg(tensor_parallel_size=2), "bfloat16", False)
    gens = s.generate(["a", "b"], 0.7, n=2, max_new_tokens=9, seed=3)
    assert seen["llm"]["tensor_parallel_size"] == 2 and seen["llm"]["dtype"] == "bfloat16"
    assert not seen["llm"]["trust_remote_code"] and seen["prompts"] == ["a", "b"]
    assert (seen["params"].n, seen["params"].temperature, seen["params"].max_tokens,
            seen["params"].seed) == (2, 0.7, 9, 3)
    assert [(g.prompt_index, g.text, g.finished) for g in gens] == [(0, " r0", False), (0, " r1", True),
                                                                   (1, " r0", False), (1, " r1", True)]


def test_a_server_that_ignores_n_is_detected_and_sampled_one_request_per_sample(tmp_path, caplog):
    cache = tmp_path / "c.jsonl"
    server = TinyOpenAIServer("zoo:teacher", ignore_n=True)
    try:
        with caplog.at_level("WARNING", logger="rewdistill"):
            gens = sampler(server.url, cache, endpoint="completions").generate(PROMPTS, 1.0, n=4, max_new_tokens=16)
        assert [g.prompt_index for g in gens] == [i for i in range(5) for _ in range(4)]
        assert caplog.text.count("whatever `n` asks") == 1  # warned once
        asked = server.requests  # counted before the reply is sent (`answered` after it)
        assert asked == 1 + 5 * 4  # the first reply showed it; then one request per sample
        again = sampler(server.url, cache, endpoint="completions").generate(PROMPTS, 1.0, n=4, max_new_tokens=16)
        assert server.requests == asked  # the resume cache stays valid: nothing asked again
        assert [g.text for g in again] == [g.text for g in gens]
    finally:
        server.close()

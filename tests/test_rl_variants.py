"""Reward sources, RL algorithms, rounds, the reward-hacking watch and `rewdistill ablate`, on micro configs."""
from __future__ import annotations

import functools
import json
import math
import shutil

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewdistill.ablate import LABELS
from rewdistill.cli import main
from rewdistill.config import RLCfg
from rewdistill.diagnostics import divergence_step
from rewdistill.io import read_jsonl
from rewdistill.models.load import load_causal_lm, load_prompt_format
from rewdistill.train.rewards import make_hybrid_reward, make_match_reward, make_teacher_judge_reward, make_vote_reward
from rewdistill.train.rl_loop import train_rl
from rewdistill.train.rollout import Rollout
from tests.conftest import FP32, MICRO, save_tiny

MICRO_Q: list[str] = []  # MICRO with the Qwen2 student, filled by `base_run`


def fake_rollout(texts: list[str], idx: list[int]) -> Rollout:
    B = len(texts)
    z = torch.zeros(B, 3)
    return Rollout(idx, texts, torch.zeros(B, 5, dtype=torch.long), torch.ones(B, 5), torch.ones(B, 3), 2,
                   torch.ones(B, dtype=torch.bool), z, z)


def test_match_and_hybrid_rewards():
    targets = ["7", None, "3"]
    match = make_match_reward(targets, lambda text, i: text.split()[-1])
    ro = fake_rollout(["so 7", "so 7", "so 4", "so 3"], [0, 1, 2, 2])
    assert match(ro).tolist() == [1.0, 0.0, 0.0, 1.0]  # no target -> never a match
    hybrid = make_hybrid_reward(lambda r: torch.tensor([0.5, 0.5, 0.5, 0.5]), match, [True, False, True], 2.0)
    assert hybrid(ro).tolist() == [2.5, 0.5, -1.5, 2.5]  # +-2 where a pseudo-label exists, rm alone elsewhere


def test_vote_reward_scores_the_answer_by_weighted_vote_share_within_its_group():
    ro = fake_rollout(["so 7", "so 7", "so 4", "so", "so 4", "so 5"], [0, 0, 0, 0, 1, 1])
    last = lambda text, i: text.split()[-1] if len(text.split()) > 1 else None  # noqa: E731
    uniform = make_vote_reward(None, last)
    assert uniform(ro).tolist() == [0.5, 0.5, 0.25, 0.0, 0.5, 0.5]  # no answer -> 0; groups by prompt
    logits = torch.tensor([0.0, 0.0, 20.0, 0.0, -20.0, 20.0])  # sigmoid: 0.5, 0.5, ~1, 0.5, ~0, ~1
    weighted = make_vote_reward(lambda r: logits, last)(ro)
    assert weighted[:4].tolist() == pytest.approx([0.4, 0.4, 0.4, 0.0], abs=1e-6)  # 1.0 / 2.5 each way
    assert weighted[4].item() == pytest.approx(0.0, abs=1e-6) and weighted[5].item() == pytest.approx(1.0, abs=1e-6)
    same_answer_other_words = fake_rollout(["so 7", "well so 7"], [0, 0])
    assert make_vote_reward(lambda r: torch.tensor([5.0, -5.0]), last)(same_answer_other_words).tolist() == [1.0, 1.0]


def test_rm_vote_needs_groups():
    with pytest.raises(ValueError, match="group_size >= 2"):
        RLCfg(reward="rm-vote", group_size=1)
    assert RLCfg(reward="rm-vote", group_size=4).vote_weights == "rm"


def test_teacher_judge_is_a_mean_log_prob(tmp_path, other_tokenizer):
    path = save_tiny("llama", other_tokenizer, tmp_path / "t")
    teacher, tok = load_causal_lm(path), load_prompt_format(path)
    prompts = ["Question: 1 + 2?\nAnswer:", "Question: 5?\nAnswer:"]
    texts, idx = [" 1 + 2 = 3\n#### 3", " #### 5", ""], [0, 1, 1]
    out = make_teacher_judge_reward(teacher, tok, prompts)(fake_rollout(texts, idx))
    scores, pairs = out.terminal, [tok.pair_ids(prompts[i], t) for t, i in zip(texts, idx)]
    assert out.dense is None and out.teacher_tokens == sum(len(p) + len(r) for p, r in pairs)  # the cost report's
    assert scores.shape == (3,) and bool((scores < 0).all()) and torch.isfinite(scores).all()
    # by hand for the last one: the response is just EOS, so the score is log p(EOS | prompt)
    ids = tok.tokenizer("Question: 5?\nAnswer:", add_special_tokens=False, return_tensors="pt")["input_ids"]
    logp = torch.log_softmax(teacher(input_ids=ids).logits[0, -1], -1)[tok.eos_id]
    assert scores[2].item() == pytest.approx(logp.item(), abs=1e-4)


def test_divergence_step():
    steps = [0, 10, 20, 30, 40]
    assert divergence_step(steps, [0.1, 0.2, 0.3, 0.5, 0.6], [0.40, 0.45, 0.44, 0.40, 0.30]) == 30
    assert divergence_step(steps, [0.1, 0.2, 0.1, 0.0, 0.0], [0.40, 0.45, 0.44, 0.40, 0.30]) is None  # RM fell too
    assert divergence_step(steps, [0.1, 0.2, 0.3, 0.5, 0.6], [0.40, 0.45, 0.46, 0.50, 0.55]) is None


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo"])
def test_each_algorithm_trains(tmp_path, other_tokenizer, algo):
    path = save_tiny("qwen2", other_tokenizer, tmp_path / "m")
    tok = load_prompt_format(path)
    policy, ref = load_causal_lm(path), load_causal_lm(path)
    critic = None
    if algo == "ppo":
        from rewdistill.models.load import load_reward_model

        critic = load_reward_model(path)
    p0 = [p.detach().clone() for p in policy.parameters()]
    cfg = RLCfg(algo=algo, reward="rm", steps=2, rollout_batch=2, group_size=1 if algo == "ppo" else 3, minibatch=3,
                max_new_tokens=6, kl_target=0.5, unfinished_penalty=None)
    logged = []
    # a reward that differs between responses to one prompt, so group baselines leave a signal
    token_reward = lambda ro: ro.ids[:, ro.P:].float().mean(1) / 100  # noqa: E731
    train_rl(policy, ref, critic, tok, ["Question: a\nAnswer:", "Question: bb\nAnswer:"], cfg,
             reward_fn=token_reward, accelerator=Accelerator(cpu=True), seed=0, log=logged.append)
    assert [r["step"] for r in logged] == [1, 2]
    for r in logged:
        for k in (["reward", "kl", "approx_kl", "clipfrac", "entropy", "pg_loss"]
                  + (["value_loss"] if algo == "ppo" else [])):
            assert math.isfinite(r[k]), k
        assert r["algo"] == algo
    assert logged[1]["kl_coef"] != logged[0]["kl_coef"]  # adaptive controller moved
    assert any((a - b).abs().max() > 0 for a, b in zip(p0, policy.parameters()))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_qwen_student):
    """A micro run up to the reward model, with a Qwen2 student whose tokenizer is not the teacher's; each
    test copies it and runs only the rl stage."""
    d = tmp_path_factory.mktemp("base")
    assert main(["run", "--run-dir", str(d), *MICRO, *FP32, "--models.student", tiny_qwen_student,
                 "--until", "reward-model"]) == 0
    MICRO_Q[:] = [*MICRO, *FP32, "--models.student", tiny_qwen_student]  # rewards recomputed here in fp32
    return d


@functools.cache
def plain_model(model_dir: str, head: bool):
    from transformers import AutoModelForSequenceClassification

    return (AutoModelForSequenceClassification if head else AutoModelForCausalLM).from_pretrained(model_dir).eval()


@torch.no_grad()
def score_by_hand(model_dir: str, kind: str, prompt: list[int], response: list[int]) -> float:
    """A saved scorer's score of one unpadded sequence, with plain transformers: `scalar` the classification head's
    logit at the last token; `likelihood` reward_scale x mean response-token log-prob + reward_bias; `judge` (a plain
    causal LM, the teacher) the mean response-token log-prob."""
    from transformers import AutoConfig

    ids = torch.tensor([prompt + response])
    if kind == "scalar":
        return plain_model(model_dir, True)(input_ids=ids).logits[0, 0].item()
    logp = torch.log_softmax(plain_model(model_dir, False)(input_ids=ids).logits[0].float(), -1)
    mean = sum(logp[len(prompt) + t - 1, r].item() for t, r in enumerate(response)) / len(response)
    if kind == "judge":
        return mean
    assert kind == "likelihood", f"a reward model kind this test does not know: {kind}"
    cfg = AutoConfig.from_pretrained(model_dir)
    return cfg.reward_scale * mean + cfg.reward_bias


@pytest.mark.parametrize("reward", ["rm", "rm-vote", "pseudo-label", "hybrid", "teacher-judge", "gold"])
def test_each_reward_source_in_the_rl_stage(base_run, tmp_path, monkeypatch, reward):
    """Each step's logged reward is the mean of what the source gives the step's rollout, recomputed here from the
    rollout (texts, or token ids where the reward model shares the policy's tokenizer), the run's labels, gold,
    and the saved reward model or teacher scored with plain transformers."""
    from transformers import AutoConfig

    import rewdistill.stages.rl as rl_stage
    from rewdistill.models.load import resolve
    from rewdistill.tasks import get_task

    seen: list[dict] = []  # per step: the rollout's prompt texts, response texts and tokens
    real = rl_stage.train_rl

    def spy(policy, ref, critic, fmt, prompts, cfg, *, on_step, **kw):
        def on(step, ro, *rest):
            P = ro.P
            toks = [(ro.ids[b, :P][ro.mask[b, :P].bool()].tolist(), ro.ids[b, P : P + int(ro.resp_mask[b].sum())]
                     .tolist()) for b in range(len(ro.idx))]
            seen.append({"prompts": [prompts[i] for i in ro.idx], "texts": list(ro.texts), "idx": list(ro.idx),
                         "finished": ro.finished.tolist(), "tokens": toks})
            return on_step(step, ro, *rest)

        return real(policy, ref, critic, fmt, prompts, cfg, on_step=on, **kw)

    monkeypatch.setattr(rl_stage, "train_rl", spy)
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    args = ["run", "--run-dir", str(d), "--force", *MICRO_Q, "--rl.reward", reward, "--rl.unfinished_penalty", "0",
            "--rl.watch_every", "1", "--rl.watch_n", "4", "--until", "rl"]
    if reward == "rm-vote":
        args += ["--rl.group_size", "2"]
    assert main(args) == 0
    rows = read_jsonl(d / "rl_metrics.jsonl")
    steps = [r for r in rows if "reward" in r]
    assert len(steps) == 2 == len(seen) and all(math.isfinite(r["pg_loss"]) for r in steps)

    task = get_task("tiny-arith")
    qid = {q["prompt"]: q["qid"] for q in read_jsonl(d / "questions.jsonl")}
    gold = {e.qid: e.answer for e in task.load("train")}
    labels = {lab["qid"]: lab for lab in read_jsonl(d / "labels.jsonl")}
    pseudo = {q: lab["pseudo_answer"] if lab["kept"] else None for q, lab in labels.items()}
    questions = {q.qid: q for q in task.questions("train")}
    rm_dir, teacher_dir = str(d / "reward_model"), resolve("zoo:teacher")
    rm_kind = getattr(AutoConfig.from_pretrained(rm_dir), "reward_kind", "scalar")
    rm_fmt, policy_fmt = load_prompt_format(rm_dir), load_prompt_format(MICRO_Q[MICRO_Q.index("--models.student") + 1])

    def scores(step: dict, model_dir: str, kind: str, fmt) -> list[float]:
        own = kind != "judge" and fmt.same_tokens(policy_fmt)  # a reward model on the policy's tokens reads them
        return [score_by_hand(model_dir, kind, *(tok if own else fmt.pair_ids(p, t)))
                for p, t, tok in zip(step["prompts"], step["texts"], step["tokens"])]

    for row, step in zip(steps, seen):
        qids = [qid[p] for p in step["prompts"]]
        answers = [task.extract(t, questions[q]) for t, q in zip(step["texts"], qids)]
        if reward in ("gold", "pseudo-label"):
            target = gold if reward == "gold" else pseudo
            raw = [float(target[q] is not None and a == target[q]) for a, q in zip(answers, qids)]
        elif reward == "teacher-judge":
            raw = scores(step, teacher_dir, "judge", load_prompt_format(teacher_dir))
        else:
            rm = scores(step, rm_dir, rm_kind, rm_fmt)
            if reward == "rm":
                raw = rm
            elif reward == "hybrid":  # +1 agree / -1 disagree with a kept pseudo-label (rl.hybrid_weight 1)
                raw = [s + (0.0 if pseudo[q] is None else 1.0 if a == pseudo[q] else -1.0)
                       for s, a, q in zip(rm, answers, qids)]
            else:  # rm-vote: the sigmoid(rm)-weighted share of the group's vote that went to the response's answer
                w = torch.sigmoid(torch.tensor(rm)).tolist()
                group = step["idx"]
                raw = [0.0 if a is None else sum(wk for ak, gk, wk in zip(answers, group, w) if gk == g and ak == a)
                       / sum(wk for gk, wk in zip(group, w) if gk == g) for a, g in zip(answers, group)]
        final = [r if ok else 0.0 for r, ok in zip(raw, step["finished"])]  # rl.unfinished_penalty 0
        assert row["reward"] == pytest.approx(sum(final) / len(final), abs=1e-4), (reward, row["step"], raw)
    watch = [r for r in rows if "watch_val_gold_accuracy" in r]
    assert [r["step"] for r in watch] == [0, 1, 2] and all(0 <= r["watch_val_gold_accuracy"] <= 1 for r in watch)
    sft = AutoModelForCausalLM.from_pretrained(d / "student_sft")
    rl = AutoModelForCausalLM.from_pretrained(d / "student_rl")
    assert any((a - b).abs().max() > 0 for a, b in zip(sft.parameters(), rl.parameters()))


def test_rounds_retrain_the_reward_model_on_new_student_samples(base_run, tmp_path):
    """Rounds 1 and 2 of a 3-round run, stopped by round-qualified stage names (`--until rl@2`, CHANGELOG)."""
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    args = ["run", "--run-dir", str(d), "--force", *MICRO_Q, "--rounds", "3", "--rl.algo", "grpo", "--rl.group_size",
            "2"]
    assert main([*args, "--until", "rl@1"]) == 0  # round 1's rl, then stop
    assert list(json.loads((d / "manifest.json").read_text())["stages"])[-1] == "rl" and not (d / "round2").exists()
    assert main([*args, "--until", "rl@2"]) == 0  # round 2, not round 3 nor evaluate
    assert not (d / "round3").exists() and not (d / "results.json").exists()
    r2 = d / "round2"
    assert (r2 / "reward_model" / "model.safetensors").exists() and (r2 / "student_rl" / "model.safetensors").exists()
    assert len(read_jsonl(r2 / "student_samples.jsonl")) > 0
    assert [r["step"] for r in read_jsonl(d / "rl_metrics.jsonl") if "reward" in r] == [1, 2]
    assert [r["step"] for r in read_jsonl(r2 / "rl_metrics.jsonl") if "reward" in r] == [3, 4]
    # round 2 starts from round 1's student and trains its reward model on both rounds' student samples
    stages = json.loads((d / "manifest.json").read_text())["stages"]
    assert list(stages)[-3:] == ["student-sample@2", "reward-model@2", "rl@2"]
    n1, n2 = len(read_jsonl(d / "student_samples.jsonl")), len(read_jsonl(r2 / "student_samples.jsonl"))
    assert f"+ {n1 + n2} student" in stages["reward-model@2"]["summary"]


def test_group_algorithms_need_groups(tmp_path, capsys):
    assert main(["run", "--run-dir", str(tmp_path), "--rl.algo", "rloo", "--rl.group_size", "1"]) == 2
    assert "rl.group_size >= 2" in capsys.readouterr().err


@pytest.mark.slow  # minutes on 2 cores: .ci/run runs it after the main suite
def test_ablate_micro(tmp_path):
    out = tmp_path / "ab"
    assert main(["ablate", "--out", str(out), "--seeds", "0", "1", "--variants", "sft_only", "rm", "rm_teacher_only",
                 "gold", *MICRO]) == 0
    s = json.loads((out / "ablation.json").read_text())
    assert s["task"] == "tiny-arith" and s["seeds"] == [0, 1] and (out / "ablation.png").exists()
    assert set(s["variants"]) == {"sft_only", "rm", "rm_teacher_only", "gold"}
    for seed_i, seed in enumerate([0, 1]):
        rm = json.loads((out / f"seed{seed}" / "rm" / "results.json").read_text())
        assert s["variants"]["rm"]["per_seed"][seed_i] == rm["accuracy"]["student_rl"]
        assert s["variants"]["sft_only"]["per_seed"][seed_i] == rm["accuracy"]["student_sft"]
        assert s["teacher_greedy"]["per_seed"][seed_i] == rm["accuracy"]["teacher_greedy"]
        gold = json.loads((out / f"seed{seed}" / "gold" / "results.json").read_text())
        assert (s["variants"]["gold"]["per_seed"][seed_i] == gold["accuracy"]["student_rl"]
                and gold["rl"]["reward"] == "gold")
        # the teacher-only variant reused the samples and SFT, and retrained the reward model without student data
        m_rm = json.loads((out / f"seed{seed}" / "rm" / "manifest.json").read_text())["stages"]
        m_to = json.loads((out / f"seed{seed}" / "rm_teacher_only" / "manifest.json").read_text())["stages"]
        assert m_to["sft"] == m_rm["sft"] and m_to["reward-model"]["hash"] != m_rm["reward-model"]["hash"]
        assert "0 student" in m_to["reward-model"]["summary"]
    v = s["variants"]["rm"]
    assert v["mean"] == pytest.approx(sum(v["per_seed"]) / 2)
    assert f"| {LABELS['rm']} (`rm`) |" in (out / "ablation.md").read_text()
    for v in ["rm", "rm_teacher_only", "gold"]:  # paired differences agree with the accuracies they pair
        for seed_i, p in enumerate(s["paired_vs_sft_only"][v]):
            want = s["variants"][v]["per_seed"][seed_i] - s["variants"]["sft_only"]["per_seed"][seed_i]
            assert p["diff"] == pytest.approx(want) and p["lo"] <= p["diff"] <= p["hi"] and p["n"] == 6
    assert "95% bootstrap interval" in (out / "ablation.md").read_text()


def test_reward_model_from_the_teacher_with_another_tokenizer(base_run, tmp_path):
    """The micro student (Qwen2) and the teacher have different tokenizers: the teacher-initialised reward
    model is trained and queried on re-tokenised text, and PPO's critic starts from the SFT student."""
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    assert main(["run", "--run-dir", str(d), "--force", *MICRO_Q, "--reward_model.init", "teacher",
                 "--rl.unfinished_penalty", "null", "--until", "rl"]) == 0
    rm_tok = AutoTokenizer.from_pretrained(d / "reward_model")
    assert len(rm_tok) != len(AutoTokenizer.from_pretrained(d / "student_sft"))
    rows = [r for r in read_jsonl(d / "rl_metrics.jsonl") if "reward" in r]
    assert len(rows) == 2 and all(math.isfinite(r["reward"]) and math.isfinite(r["value_loss"]) for r in rows)
    assert len({round(r["reward"], 6) for r in rows}) == 2  # real scores, not the constant unfinished penalty


@pytest.mark.slow  # minutes on 2 cores: .ci/run runs it after the main suite
def test_ablate_jobs_runs_seeds_as_parallel_processes(tmp_path):
    out = tmp_path / "ab"
    args = ["ablate", "--out", str(out), "--seeds", "0", "1", "--variants", "sft_only", "rm", *MICRO]
    assert main([*args, "--jobs", "2"]) == 0
    s = json.loads((out / "ablation.json").read_text())
    assert s["seeds"] == [0, 1] and all((out / f"seed{k}.log").exists() for k in (0, 1))
    for i, seed in enumerate([0, 1]):
        rm = json.loads((out / f"seed{seed}" / "rm" / "results.json").read_text())
        assert s["variants"]["rm"]["per_seed"][i] == rm["accuracy"]["student_rl"]


def test_rl_stage_loads_every_model_with_trust_remote_code(base_run, tmp_path, monkeypatch):
    """models.trust_remote_code reaches every model the rl stage loads (policy, reference, reward model, critic)."""
    import rewdistill.models.load as load

    seen = []
    for cls in (load.AutoModelForCausalLM, load.AutoModelForSequenceClassification):
        original = cls.from_pretrained.__func__

        def spy(klass, path, *args, _original=original, **kw):
            seen.append((klass.__name__, str(path), kw.get("trust_remote_code")))
            return _original(klass, path, *args, **kw)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    d = tmp_path / "run"
    shutil.copytree(base_run, d)
    assert main(["run", "--run-dir", str(d), *MICRO_Q, "--models.trust_remote_code", "true", "--until", "rl"]) == 0
    rl_loads = [s for s in seen if "student_sft" in s[1] or "reward_model" in s[1]]
    assert len(rl_loads) >= 4 and all(trust is True for _, _, trust in rl_loads), rl_loads


def test_sft_matched_trains_four_epochs_more_than_the_run_it_is_matched_to():
    from rewdistill.ablate import VARIANTS, relative_to
    from rewdistill.config_files import load_config

    assert relative_to(load_config(None, {"sft.epochs": "12"}), VARIANTS["sft_matched"]) == \
        {"sft.epochs": "16", "rl.steps": "0"}
    assert relative_to(load_config(None, {}), {"rl.reward": "gold"}) == {"rl.reward": "gold"}


def test_the_default_recipe_is_grpo_on_the_reward_models_vote_and_runs(tmp_path):
    """The defaults (issue 24's recipe, docs/rl.md): GRPO, groups of 8, the reward model's vote; a micro run with them
    trains without a critic and logs groups of 8 responses per prompt."""
    from rewdistill.config_files import load_config

    rl = load_config(None, {}).rl
    assert (rl.algo, rl.reward, rl.group_size, rl.rollout_batch, rl.steps, rl.lr, rl.kl_coef) == (
        "grpo", "rm-vote", 8, 16, 40, 2e-5, 0.1)
    d = tmp_path / "run"
    defaults = ["--rl.algo", rl.algo, "--rl.reward", rl.reward, "--rl.group_size", str(rl.group_size),
                "--rl.minibatch", "16"]
    assert main(["run", "--run-dir", str(d), *MICRO, *defaults, "--until", "rl"]) == 0
    steps = [r for r in read_jsonl(d / "rl_metrics.jsonl") if "algo" in r]
    assert [r["algo"] for r in steps] == ["grpo", "grpo"] and not any("value_loss" in r for r in steps)
    assert not (d / "student_rl" / "critic").exists()

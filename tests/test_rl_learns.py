"""RL moves the policy the way its reward says (a sign error fails here), and each step's logged reward is what the
reward source gives the rollout's texts, recomputed independently with a competent policy."""
from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from rewdistill.config import RLCfg
from rewdistill.models.forward import score_sequences
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model
from rewdistill.tasks import get_task
from rewdistill.train.rewards import (
    local_teacher_logprobs,
    make_hybrid_reward,
    make_match_reward,
    make_rm_reward,
    make_teacher_judge_reward,
    make_teacher_kl_reward,
    make_vote_reward,
)
from rewdistill.train.rl_loop import train_rl
from tests.conftest import save_tiny

PROMPTS = ["Question: a\nAnswer:", "Question: bb\nAnswer:"]


@torch.no_grad()
def even_first_token_mass(policy, fmt) -> float:
    """Mean over the prompts of P(the first response token has an even id)."""
    out = []
    for p in PROMPTS:
        ids = torch.tensor([fmt.prompt_ids(p)])
        probs = torch.softmax(policy(input_ids=ids).logits[0, -1].float(), -1)  # (V,)
        out.append(probs[0::2].sum().item())
    return sum(out) / len(out)


@pytest.mark.parametrize("algo", ["ppo", "grpo", "rloo", "raft"])
def test_a_rewarded_token_class_becomes_more_likely(tmp_path, other_tokenizer, algo):
    path = save_tiny("llama", other_tokenizer, tmp_path / "m")
    fmt = load_prompt_format(path)
    policy, ref = load_causal_lm(path), load_causal_lm(path)
    critic = load_reward_model(path) if algo == "ppo" else None
    G = 1 if algo == "ppo" else 8
    steps = 20 if algo == "raft" else 10  # raft (one likelihood step on each group's best) moves slower: at 10 steps
    # its gain was under 0.1 on 2 of 6 seeds with either sampling stream, at 20 above 0.17 on all 12 runs
    cfg = RLCfg(algo=algo, reward="rm", steps=steps, rollout_batch=16 // G, group_size=G, minibatch=8, max_new_tokens=3,
                lr=1e-2, kl_coef=0.0, unfinished_penalty=None, temperature=1.0)
    reward = lambda ro: (ro.ids[:, ro.P] % 2 == 0).float()  # noqa: E731  1 when the first response token is even
    before = even_first_token_mass(policy, fmt)
    torch.manual_seed(0)
    train_rl(policy, ref, critic, fmt, PROMPTS, cfg, reward_fn=reward, accelerator=Accelerator(cpu=True), seed=0,
             log=lambda r: None)
    after = even_first_token_mass(policy.eval(), fmt)
    assert after > before + 0.1, (before, after)


@pytest.fixture(scope="module")
def competent():
    """The shipped teacher as the policy (it answers tiny-arith about half the time), and a reward model made from
    it (an untrained head: any scores will do, they are recomputed)."""
    task = get_task("tiny-arith")
    examples = task.load("train")[:6]
    fmt = load_prompt_format("zoo:teacher")
    return task, examples, fmt, load_reward_model("zoo:teacher").eval(), load_causal_lm("zoo:student").eval()


@torch.no_grad()
def response_logprobs(model, ids: list[int], start: int) -> list[float]:
    """log p(ids[t] | ids[:t]) for t >= start, one unpadded forward."""
    logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return [logp[t - 1, ids[t]].item() for t in range(start, len(ids))]


@pytest.mark.parametrize("source", ["pseudo-label", "gold", "rm", "rm-vote", "hybrid", "teacher-judge", "teacher-kl"])
def test_each_logged_reward_is_what_the_source_gives_the_rollout_texts(competent, source):
    task, examples, fmt, rm, scorer = competent  # scorer: a second model standing in for the teacher
    prompts = [task.prompt(e) for e in examples]
    gold = [e.answer for e in examples]
    pseudo = [a if i % 2 == 0 else None for i, a in enumerate(gold)]  # a labelled half; the others get nothing

    def extract(text, i):
        return task.extract(text, examples[i])

    fns = {"pseudo-label": make_match_reward(pseudo, extract), "gold": make_match_reward(gold, extract),
           "rm": make_rm_reward(rm), "rm-vote": make_vote_reward(make_rm_reward(rm), extract),
           "hybrid": make_hybrid_reward(make_rm_reward(rm), make_match_reward(pseudo, extract),
                                        [p is not None for p in pseudo], 1.0),
           "teacher-judge": make_teacher_judge_reward(scorer, fmt, prompts),
           "teacher-kl": make_teacher_kl_reward(local_teacher_logprobs(scorer))}

    def by_hand(ro) -> list[float]:  # from the rollout's texts (rules) or tokens (models), independently
        texts, idx = ro.texts, ro.idx
        if source in ("pseudo-label", "gold"):
            target = pseudo if source == "pseudo-label" else gold
            return [float(target[i] is not None and extract(t, i) == target[i]) for t, i in zip(texts, idx)]
        if source == "teacher-judge":  # the response text re-encoded after its prompt, as a judge reads it
            out = []
            for t, i in zip(texts, idx):
                p, r = fmt.pair_ids(prompts[i], t)
                lps = response_logprobs(scorer, p + r, len(p))
                out.append(sum(lps) / len(lps))
            return out
        seqs, lens = [], []
        for b in range(len(idx)):  # the prompt's ids without padding, then the sampled response ids (EOS included)
            n = int(ro.resp_mask[b].sum())
            seqs.append(ro.ids[b, : ro.P][ro.mask[b, : ro.P].bool()].tolist() + ro.ids[b, ro.P : ro.P + n].tolist())
            lens.append(n)
        if source == "teacher-kl":  # per response: sum over its tokens of log p_teacher - log p_student (rollout's)
            return [sum(response_logprobs(scorer, s, len(s) - n)) - ro.logp[b, :n].sum().item()
                    for b, (s, n) in enumerate(zip(seqs, lens))]
        scores = score_sequences(rm, seqs, fmt.pad_id)
        if source == "rm":
            return scores
        if source == "hybrid":
            return [sc + (0.0 if pseudo[i] is None else 1.0 if extract(t, i) == pseudo[i] else -1.0)
                    for sc, t, i in zip(scores, texts, idx)]
        w = torch.sigmoid(torch.tensor(scores)).tolist()
        out = []
        for t, i in zip(texts, idx):
            a = extract(t, i)
            mine = sum(wk for tk, ik, wk in zip(texts, idx, w) if ik == i and a is not None and extract(tk, ik) == a)
            out.append(mine / sum(wk for ik, wk in zip(idx, w) if ik == i))
        return out

    policy, ref = load_causal_lm("zoo:teacher"), load_causal_lm("zoo:teacher")
    cfg = RLCfg(algo="grpo", steps=3, rollout_batch=6, group_size=4, minibatch=12, max_new_tokens=48, lr=1e-5,
                unfinished_penalty=None)
    seen, logged = [], []
    train_rl(policy, ref, None, fmt, prompts, cfg, reward_fn=fns[source], accelerator=Accelerator(cpu=True), seed=0,
             log=logged.append, on_step=lambda step, ro, pol, score: seen.append(by_hand(ro)))
    key = "dense_reward" if source == "teacher-kl" else "reward"  # teacher-kl: no terminal score, all per token
    rewards = [r[key] for r in logged if "reward" in r]
    assert rewards == pytest.approx([sum(s) / len(s) for s in seen], abs=1e-4)
    if source in ("pseudo-label", "gold"):
        assert any(0 < sum(s) < len(s) for s in seen)  # a competent policy: some right, some wrong

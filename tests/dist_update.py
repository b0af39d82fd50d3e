"""One policy update (and one critic update) on a fixed rollout, on however many processes this is launched with
(`python tests/dist_update.py MODEL OUT` or under torchrun / `accelerate launch`, DDP or FSDP): each process takes
its share of the rollout's rows. The main process saves the updated weights to OUT (safetensors), for
tests/test_scale.py and tests/test_fsdp.py to compare. With a third argument SAVED, the updated policy, critic and a
likelihood reward model (one BCE step on the same rows) are also saved as HF directories under SAVED the way the
stages save them, with their scores on a fixed batch computed in-process (sharded, under FSDP) in
SAVED/in_process.safetensors: what a reload with plain transformers must reproduce."""
from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from rewdistill.algo.losses import bce_reward_loss
from rewdistill.config import RLCfg
from rewdistill.launch import sharding_note, use_launched_engine
from rewdistill.models.load import load_causal_lm, load_prompt_format, load_reward_model
from rewdistill.models.reward import LikelihoodRM, batch_scores
from rewdistill.train.common import full_state_dict, save_pretrained
from rewdistill.train.reward_model import save_reward_model
from rewdistill.train.rollout import Rollout
from rewdistill.train.updates import actor_update, critic_update


def fixed_rollout(vocab: int, B: int = 8, P: int = 5, T: int = 7) -> tuple[Rollout, torch.Tensor, torch.Tensor]:
    """Random but fixed ids, responses of *unequal* lengths (so the halves hold different token counts)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (B, P + T), generator=g)
    lengths = torch.tensor([7, 1, 2, 7, 3, 6, 1, 5])
    resp_mask = (torch.arange(T)[None, :] < lengths[:, None]).float()  # (B, T)
    mask = torch.cat([torch.ones(B, P), resp_mask], 1)
    logp = -torch.rand(B, T, generator=g) * resp_mask
    adv = torch.randn(B, T, generator=g) * resp_mask
    returns = torch.randn(B, T, generator=g) * resp_mask
    ro = Rollout(list(range(B)), [""] * B, ids, mask, resp_mask, P, torch.ones(B, dtype=torch.bool), logp, logp)
    return ro, adv, returns


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    saved = sys.argv[3] if len(sys.argv) > 3 else None
    acc = Accelerator(cpu=True)
    use_launched_engine(acc)  # FSDP 2 when launched with configs/accelerate/fsdp.yaml
    torch.manual_seed(0)
    policy, critic = load_causal_lm(path, "cpu", "float32"), load_reward_model(path, "cpu", "float32")
    rm = LikelihoodRM(load_causal_lm(path, "cpu", "float32"), scale=2.0, bias=-0.5)
    ro, adv, returns = fixed_rollout(policy.config.vocab_size)
    rows = torch.arange(len(ro.idx))[acc.process_index :: acc.num_processes]  # this process's share
    keep = torch.zeros(len(ro.idx), dtype=torch.bool)
    keep[rows] = True
    labels = (torch.arange(len(ro.idx)) % 2).float()[keep]  # (b,) the reward model's targets
    ro, adv, returns = ro.subset(keep), adv[keep], returns[keep]
    cfg = RLCfg(ppo_epochs=1, lr=1e-2, critic_lr=1e-2, batching="random")  # the rows are not groups of a prompt
    opt_p = torch.optim.SGD(policy.parameters(), lr=cfg.lr)  # SGD: the update is the gradient itself
    opt_c = torch.optim.SGD(critic.parameters(), lr=cfg.critic_lr)
    opt_r = torch.optim.SGD(rm.parameters(), lr=1e-2)
    policy, opt_p = acc.prepare(policy, opt_p)  # one model per call: accelerate's FSDP 2 takes no more
    critic, opt_c = acc.prepare(critic, opt_c)
    rm, opt_r = acc.prepare(rm, opt_r)
    for name, m in [("policy", policy), ("critic", critic), ("reward model", rm)]:
        if note := sharding_note(acc, m, name):
            print(note, flush=True)
    old_values = torch.zeros_like(returns)
    actor_update(policy, opt_p, ro, adv, cfg, acc, seed=0, kl_loss_coef=0.1, minibatch=len(ro.idx))
    critic_update(critic, opt_c, ro, old_values, returns, cfg, acc, seed=0, minibatch=len(ro.idx))
    resp = torch.cat([torch.zeros_like(ro.ids[:, : ro.P]), ro.resp_mask], 1)  # (b, P+T) response tokens
    loss, _ = bce_reward_loss(batch_scores(rm, ro.ids, ro.mask.long(), resp), labels)  # mean over this share
    acc.backward(loss)  # the engine averages the processes' gradients: equal shares, the global mean
    opt_r.step()
    state = {}
    for name, m in [("policy", policy), ("critic", critic), ("rm", rm)]:  # every process: a collective under FSDP
        state |= {f"{name}.{k}": v.detach().clone() for k, v in full_state_dict(acc, m).items()}
    if acc.is_main_process:
        save_file(state, out)
    if saved:
        in_process(acc, policy, critic, rm, path, saved)
    acc.wait_for_everyone()


@torch.no_grad()
def in_process(acc, policy, critic, rm, path, saved) -> None:
    """Scores of the trained (possibly sharded) models on a fixed batch, and the models saved as the stages save
    them."""
    ro, _, _ = fixed_rollout(acc.unwrap_model(policy).config.vocab_size)
    resp = torch.cat([torch.zeros_like(ro.ids[:, : ro.P]), ro.resp_mask], 1)
    mask = ro.mask.long()
    scores = {"policy_logits": policy(input_ids=ro.ids, attention_mask=mask).logits,  # (B, P+T, V)
              "critic_values": critic(input_ids=ro.ids[:, : ro.P], attention_mask=mask[:, : ro.P]).logits[:, 0],
              "rm_scores": batch_scores(rm, ro.ids, mask, resp)}  # (B,)
    tok = load_prompt_format(path).tokenizer
    save_pretrained(acc, policy, tok, f"{saved}/policy")
    save_pretrained(acc, critic, tok, f"{saved}/critic")
    save_reward_model(acc, rm, tok, f"{saved}/rm")
    if acc.is_main_process:
        save_file({k: v.contiguous() for k, v in scores.items()}, f"{saved}/in_process.safetensors")


if __name__ == "__main__":
    main()

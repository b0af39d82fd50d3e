"""One policy update (and one critic update) on a fixed rollout, on however many processes this is launched with
(`python tests/dist_update.py MODEL OUT` or under torchrun): each process takes its share of the rollout's
rows. The main process saves the updated weights to OUT (safetensors), for tests/test_scale.py to compare."""
from __future__ import annotations

import sys

import torch
from accelerate import Accelerator
from safetensors.torch import save_file

from rewdistill.config import RLCfg
from rewdistill.models.load import load_causal_lm, load_reward_model
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
    acc = Accelerator(cpu=True)
    torch.manual_seed(0)
    policy, critic = load_causal_lm(path, "cpu", "float32"), load_reward_model(path, "cpu", "float32")
    ro, adv, returns = fixed_rollout(policy.config.vocab_size)
    rows = torch.arange(len(ro.idx))[acc.process_index :: acc.num_processes]  # this process's share
    keep = torch.zeros(len(ro.idx), dtype=torch.bool)
    keep[rows] = True
    ro, adv, returns = ro.subset(keep), adv[keep], returns[keep]
    cfg = RLCfg(ppo_epochs=1, lr=1e-2, critic_lr=1e-2)
    opt_p = torch.optim.SGD(policy.parameters(), lr=cfg.lr)  # SGD: the update is the gradient itself
    opt_c = torch.optim.SGD(critic.parameters(), lr=cfg.critic_lr)
    policy, opt_p, critic, opt_c = acc.prepare(policy, opt_p, critic, opt_c)
    old_values = torch.zeros_like(returns)
    actor_update(policy, opt_p, ro, adv, cfg, acc, seed=0, kl_loss_coef=0.1, minibatch=len(ro.idx))
    critic_update(critic, opt_c, ro, old_values, returns, cfg, acc, seed=0, minibatch=len(ro.idx))
    if acc.is_main_process:
        state = {f"policy.{k}": v.detach().clone() for k, v in acc.unwrap_model(policy).state_dict().items()}
        state |= {f"critic.{k}": v.detach().clone() for k, v in acc.unwrap_model(critic).state_dict().items()}
        save_file(state, out)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()

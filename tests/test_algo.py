"""The math layer on hand-computed numbers."""
import math

import pytest
import torch

from rewdistill.algo.losses import (
    bce_reward_loss,
    bradley_terry_loss,
    gae,
    kl_per_token,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_rewards,
)
from rewdistill.algo.voting import majority_vote


def test_majority_vote_counts_unparsable_in_the_share_and_breaks_ties_by_first_seen():
    assert majority_vote(["3", "4", "3", None]) == ("3", 0.5)
    assert majority_vote(["4", "3", "3", "4"]) == ("4", 0.5)
    assert majority_vote([None, None]) == (None, 0.0)
    assert majority_vote([]) == (None, 0.0)


def test_masked_mean_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    assert masked_mean(x, m, dim=1).tolist() == pytest.approx([1.5, 3.0])


def test_masked_whiten_zero_mean_unit_variance_on_mask():
    x = torch.tensor([[1.0, 3.0, 50.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    w = masked_whiten(x, m)
    assert w[0, :2].tolist() == pytest.approx([-1.0, 1.0], abs=1e-4)


def test_kl_estimators():
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_per_token(logp, ref, "k1").item() == pytest.approx(math.log(2))
    # k3 = r - 1 - log r with r = ref/pi = 0.5  ->  0.5 - 1 + log 2
    assert kl_per_token(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))


def test_token_rewards_put_score_on_last_response_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    r = token_rewards(torch.tensor([1.0, -1.0]), kl, mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.01, -0.02, 0.97], [-1.05, 0.0, 0.0]]))


def test_gae_hand_computed():
    # one response of 2 tokens; rewards (0, 1); values (0.5, 0.8); gamma=1, lam=0.5
    # delta1 = 1 - 0.8 = 0.2 ; A1 = 0.2
    # delta0 = 0 + 0.8 - 0.5 = 0.3 ; A0 = 0.3 + 0.5 * 0.2 = 0.4
    adv, ret = gae(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([[0.5, 0.8, 9.0]]),
                   torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.4, 0.2, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.9, 1.0, 0.0]]))


def test_ppo_policy_loss_clips_like_torchtune_example():
    # ratio = e with a positive advantage of 1: the clipped term 1.2 wins -> loss -1.2
    logp, old = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    loss, stats = ppo_policy_loss(logp, old, torch.tensor([[1.0]]), torch.tensor([[1.0]]), clip=0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert stats["clipfrac"] == 1.0
    assert stats["approx_kl"] == pytest.approx(math.e - 1 - 1)
    # negative advantage: the unclipped -A * e is the larger -> loss e
    loss, _ = ppo_policy_loss(logp, old, torch.tensor([[-1.0]]), torch.tensor([[1.0]]), clip=0.2)
    assert loss.item() == pytest.approx(math.e)


def test_ppo_value_loss_takes_the_worse_of_clipped_and_unclipped():
    # v=2, old=0, R=1, clip=0.5: unclipped (2-1)^2 = 1; clipped v=0.5: (0.5-1)^2 = 0.25 -> 0.5 * 1
    loss, stats = ppo_value_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]),
                                 torch.tensor([[1.0]]), clip=0.5)
    assert loss.item() == pytest.approx(0.5)
    assert stats["vf_clipfrac"] == 0.0


def test_reward_losses():
    loss, stats = bce_reward_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 1]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)
    assert stats["acc"] == 0.5  # a score of 0 is not > 0
    loss, stats = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert stats["acc"] == 1.0


def test_group_advantages_hand_computed():
    from rewdistill.algo.advantages import group_advantages

    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.3, 0.3, 0.3, 0.3]]))
    # group 1: mean 0.5, unbiased std sqrt(1/3); group 2: all equal -> 0
    assert torch.allclose(adv[0], torch.tensor([1, -1, -1, 1.0]) * 0.5 / math.sqrt(1 / 3), atol=1e-3)
    assert torch.equal(adv[1], torch.zeros(4))
    assert torch.allclose(group_advantages(torch.tensor([[2.0, 0.0]]), scale_by_std=False), torch.tensor([[1.0, -1.0]]))


def test_rloo_advantages_leave_one_out():
    from rewdistill.algo.advantages import rloo_advantages

    adv = rloo_advantages(torch.tensor([[1.0, 0.0, 0.0], [2.0, 4.0, 6.0]]))
    assert torch.allclose(adv, torch.tensor([[1.0, -0.5, -0.5], [-3.0, 0.0, 3.0]]))
    with pytest.raises(ValueError, match="group_size"):
        rloo_advantages(torch.tensor([[1.0]]))


def test_adaptive_kl_controller_moves_toward_target_and_clips():
    from rewdistill.algo.advantages import adaptive_kl_coef

    assert adaptive_kl_coef(0.1, kl=2.0, target=1.0, horizon=10) == pytest.approx(0.102)  # error clipped to 0.2
    assert adaptive_kl_coef(0.1, kl=0.9, target=1.0, horizon=10) == pytest.approx(0.099)
    assert adaptive_kl_coef(0.1, kl=1.0, target=1.0, horizon=10) == pytest.approx(0.1)


def test_mixed_groups_keeps_only_groups_with_different_scores():
    from rewdistill.algo.advantages import mixed_groups

    scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])  # groups of 3: all 1 / mixed / all 0
    assert mixed_groups(scores, 3).tolist() == [False] * 3 + [True] * 3 + [False] * 3


def test_best_of_group_marks_each_groups_highest_score_once():
    from rewdistill.algo.advantages import best_of_group
    s = torch.tensor([[0.1, 0.9, 0.3], [2.0, 2.0, -1.0], [0.0, 0.0, 0.0]])  # (N=3, G=3); a tie goes to the first
    # the third group all scores the same (e.g. no response matches a rule reward): no best, nothing imitated
    assert torch.equal(best_of_group(s), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))

"""Sign flips and their optimiser-aware null against closed forms: arccos(rho) / pi on pure noise
(Sheppard's formula for the sign disagreement of two Gaussians with correlation rho)."""

from __future__ import annotations

import math

import pytest
import torch

from models.recipes import RECIPES, TrainConfig
from models.sign_flips import SignFlips, flip_reference, noise_null


def _null(train: TrainConfig, steps: int = 1500, scale: float = 1.0) -> dict:
    initial = torch.randn(4096, generator=torch.Generator().manual_seed(0)) * 0.1
    return noise_null(train, initial, [10, 100, steps], steps, noise_scale=scale, seed=1)


def test_adamw_on_noise_flips_at_arccos_beta1_over_pi():
    found = _null(RECIPES["default"])  # AdamW, beta1 0.9, weight decay 0.01, warm-up + cosine
    expected = math.acos(0.9) / math.pi
    assert expected == pytest.approx(0.1436, abs=1e-4)
    assert found["null"] == pytest.approx(expected, abs=0.01)
    assert flip_reference("adamw", (0.9, 0.999)) == pytest.approx(expected)
    # the momentum buffer starts empty: the first pairs flip more (step 2: arccos(0.9/sqrt(1.81)))
    assert found["by_step"][10] > expected + 0.02
    assert found["by_step"][100] == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("beta1", [0.5, 0.95])
def test_adam_null_follows_beta1(beta1):
    found = _null(TrainConfig(betas=(beta1, 0.999), warmup_steps=0), steps=800)
    assert found["null"] == pytest.approx(math.acos(beta1) / math.pi, abs=0.01)


def test_plain_sgd_flips_half_and_momentum_sgd_like_adam():
    plain = _null(RECIPES["paper"], steps=400)  # SGD, no momentum, constant rate
    assert plain["null"] == pytest.approx(0.5, abs=0.01)
    assert flip_reference("sgd", momentum=0.0) == 0.5
    heavy = _null(TrainConfig(optimizer="sgd", momentum=0.9, lr=0.01), steps=800)
    assert heavy["null"] == pytest.approx(math.acos(0.9) / math.pi, abs=0.01)


def test_null_is_scale_free_for_adam_but_not_for_sgd_with_weight_decay():
    adam_small, adam_big = (_null(RECIPES["default"], 300, s)["null"] for s in (1e-3, 1e3))
    assert adam_small == pytest.approx(adam_big, abs=0.01)
    # SGD with decay: noise far below decay * weight lets every update point towards 0
    decayed = TrainConfig(optimizer="sgd", lr=0.01, weight_decay=0.1, schedule="constant")
    assert _null(decayed, 300, 1e-6)["null"] < 0.01
    assert _null(decayed, 300, 1.0)["null"] == pytest.approx(0.5, abs=0.02)


def test_counter_counts_flipping_entries_over_nonzero_pairs():
    weight = torch.nn.Parameter(torch.zeros(4))
    flips = SignFlips([weight])
    for update in ([1.0, 1.0, -1.0, 0.0], [1.0, -1.0, 1.0, 2.0], [-1.0, -1.0, 1.0, 2.0]):
        flips.snapshot()
        with torch.no_grad():
            weight += torch.tensor(update)
        flips.record()
    # pair 1: entries 0-2 count, 1 and 2 flip (2/3); pair 2: all count, entry 0 flips (1/4)
    assert flips.summary() == {"sign_flip_frac": pytest.approx((2 / 3 + 1 / 4) / 2),
                               "sign_flip_steps": 2}  # fmt: skip

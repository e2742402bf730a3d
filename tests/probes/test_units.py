"""Unit regimes, phase labels, sign flips and weight norms on cases with known answers."""

from __future__ import annotations

import pytest
import torch

from hmm.errors import InvalidInput
from models.rnn import RNNConfig, build_rnn
from probes.units import (
    activation_derivative,
    phase_label,
    sign_flip_fraction,
    unit_regimes,
    weight_norms,
)


def _z(scale: float, shape=(200, 32), seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def test_derivatives_match_closed_forms():
    z = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(activation_derivative(z, "tanh"), 1 - torch.tanh(z) ** 2)
    s = torch.sigmoid(z)
    torch.testing.assert_close(activation_derivative(z, "sigmoid"), s * (1 - s))
    torch.testing.assert_close(activation_derivative(z, "relu"), (z > 0).double())
    torch.testing.assert_close(activation_derivative(z, "identity"), torch.ones_like(z))


def test_identity_units_are_all_linear():
    regimes = unit_regimes(_z(50.0), "identity")
    assert regimes["linear_frac"] == 1.0
    assert regimes["saturated_frac"] == 0.0 and regimes["dead_frac"] == 0.0
    assert regimes["phase"] == "linear"


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_sigmoid_like_units_go_linear_to_saturated_with_scale(act):
    assert unit_regimes(_z(1e-3), act) == {
        "linear_frac": 1.0,
        "saturated_frac": 0.0,
        "dead_frac": 0.0,
        "act": act,
        "phase": "linear",
    }
    big = unit_regimes(_z(100.0), act)
    assert big["saturated_frac"] > 0.9 and big["phase"] == "saturated"
    middle = unit_regimes(_z(1.5), act)
    assert middle["phase"] == "hybrid"


def test_tanh_thresholds_are_the_documented_ones():
    # tanh'(z) = 1 - tanh(z)^2 >= 0.9 iff |z| <= atanh(sqrt(0.1)) = 0.3275;  <= 0.1 iff |z| >= 1.818
    z = torch.tensor([[0.0, 0.3, 0.36, 1.0, 1.7, 1.9, -2.5, -0.2]])
    regimes = unit_regimes(z.T, "tanh")  # 8 inputs of one unit
    assert regimes["linear_frac"] == pytest.approx(3 / 8)
    assert regimes["saturated_frac"] == pytest.approx(2 / 8)
    custom = unit_regimes(z.T, "tanh", linear_threshold=0.5, saturated_threshold=0.5)
    assert custom["linear_frac"] == pytest.approx(4 / 8)  # 1 - tanh^2 >= 0.5 iff |z| <= 0.8814


def test_relu_regimes_and_dead_units():
    z = torch.tensor([[1.0, -1.0, -2.0, 0.5], [2.0, -0.5, -1.0, -0.1], [-1.0, -3.0, -0.2, 0.3]])
    regimes = unit_regimes(z, "relu")  # 3 inputs x 4 units; units 1 and 2 never fire
    assert regimes["linear_frac"] == pytest.approx(4 / 12)
    assert regimes["saturated_frac"] == pytest.approx(8 / 12)
    assert regimes["dead_frac"] == pytest.approx(2 / 4)
    assert regimes["phase"] == "saturated"  # half the units dead
    healthy = unit_regimes(_z(1.0), "relu")
    assert 0.4 < healthy["saturated_frac"] < 0.6 and healthy["dead_frac"] == 0.0
    assert healthy["phase"] == "hybrid"


def test_phase_label_rules():
    assert (
        phase_label({"linear_frac": 0.8, "saturated_frac": 0.0, "dead_frac": 0}, "tanh") == "linear"
    )
    assert (
        phase_label({"linear_frac": 0.1, "saturated_frac": 0.5, "dead_frac": 0}, "tanh")
        == "saturated"
    )
    assert (
        phase_label({"linear_frac": 0.4, "saturated_frac": 0.4, "dead_frac": 0}, "tanh") == "hybrid"
    )
    assert (
        phase_label({"linear_frac": 0.4, "saturated_frac": 0.6, "dead_frac": 0.1}, "relu")
        == "hybrid"
    )


def test_rnn_with_tiny_weights_is_linear_from_its_hooks():
    model = build_rnn(RNNConfig(hidden=8, act_fn="tanh", n_ctx=6, seed=0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2, 0, 1, 2]]))
    assert unit_regimes(cache["blocks.0.hook_pre"], "tanh")["linear_frac"] == 1.0


def test_sign_flip_fraction_on_synthetic_sequences():
    before = torch.zeros(5)
    middle = torch.tensor([1.0, 1.0, 1.0, 0.0, -1.0])
    after = torch.tensor([0.0, 2.0, 1.0, 5.0, -3.0])
    # updates: (+, -), (+, +), (+, 0), (0, +), (-, -): two entries moved twice, one of them flipped
    assert sign_flip_fraction(before, middle, after) == pytest.approx(1 / 3)
    oscillating = [torch.tensor([0.0, 0.0]), torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0])]
    assert sign_flip_fraction(*oscillating) == 1.0
    assert sign_flip_fraction(before, before, before) == 0.0


def test_weight_norms_per_layer_and_relative_change():
    initial = {
        "blocks.0.w": torch.tensor([3.0, 4.0]),
        "embed.weight": torch.tensor([1.0, 0.0]),
        "blocks.0.mask": torch.tensor([True, False]),
    }
    now = {
        "blocks.0.w": torch.tensor([3.0, 4.0]) * 2,
        "embed.weight": torch.tensor([1.0, 1.0]),
        "blocks.0.mask": torch.tensor([True, False]),
    }
    norms = weight_norms(now, initial)
    assert set(norms) == {"blocks.0", "embed", "all"}
    assert norms["blocks.0"] == {
        "norm": pytest.approx(10.0),
        "rel_change_from_init": pytest.approx(1.0),
    }
    assert norms["embed"]["rel_change_from_init"] == pytest.approx(1.0)
    assert weight_norms(now)["all"]["rel_change_from_init"] is None


def test_unknown_activation_is_invalid_input():
    with pytest.raises(InvalidInput, match="unknown activation"):
        unit_regimes(_z(1.0), "softplus")

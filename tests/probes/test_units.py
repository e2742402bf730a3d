"""Unit regimes, phase labels, sign flips and weight norms on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmm.errors import InvalidInput
from models.rnn import RNNConfig, build_rnn
from probes.units import (
    activation_derivative,
    phase_label,
    sparsity_label,
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
    small = unit_regimes(_z(1e-3), act)
    assert small["linear_frac"] == 1.0 and small["phase"] == "linear"
    assert small["gain_mean"] == pytest.approx(1.0, abs=1e-5)
    big = unit_regimes(_z(100.0), act)
    assert big["saturated_frac"] > 0.9 and big["phase"] == "saturated"
    assert unit_regimes(_z(1.5), act)["phase"] == "hybrid"


def test_tanh_gain_is_the_gaussian_expectation_of_its_slope():
    """z ~ N(0, 1.5^2): E[1 - tanh(z)^2] by quadrature on a fine grid (independent of autodiff)."""
    z = _z(1.5, shape=(20_000, 8))
    grid = np.linspace(-12, 12, 200_001)
    density = np.exp(-0.5 * (grid / 1.5) ** 2) / (1.5 * np.sqrt(2 * np.pi))
    expected = np.trapezoid((1 - np.tanh(grid) ** 2) * density, grid)
    found = unit_regimes(z, "tanh")
    assert found["gain_mean"] == pytest.approx(expected, abs=5e-3)
    per_unit = (1 - torch.tanh(z.double()) ** 2).mean(0).numpy()
    assert found["gain_quantiles"]["q50"] == pytest.approx(np.quantile(per_unit, 0.5))
    assert found["gain_quantiles"]["q10"] == pytest.approx(np.quantile(per_unit, 0.1))


def test_sigmoid_gain_is_relative_to_its_slope_at_zero():
    z = torch.tensor([[0.0], [2.0], [-1.0]], dtype=torch.float64)
    s = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0])))
    expected = np.mean(s * (1 - s) / 0.25)
    assert unit_regimes(z, "sigmoid")["gain_mean"] == pytest.approx(expected, rel=1e-9)


def test_tanh_thresholds_are_the_documented_ones():
    # tanh'(z) = 1 - tanh(z)^2 >= 0.9 iff |z| <= atanh(sqrt(0.1)) = 0.3275;  <= 0.1 iff |z| >= 1.818
    z = torch.tensor([[0.0, 0.3, 0.36, 1.0, 1.7, 1.9, -2.5, -0.2]])
    regimes = unit_regimes(z.T, "tanh")  # 8 inputs of one unit
    assert regimes["linear_frac"] == pytest.approx(3 / 8)
    assert regimes["saturated_frac"] == pytest.approx(2 / 8)
    custom = unit_regimes(z.T, "tanh", linear_threshold=0.5, saturated_threshold=0.5)
    assert custom["linear_frac"] == pytest.approx(4 / 8)  # 1 - tanh^2 >= 0.5 iff |z| <= 0.8814


def test_relu_is_reported_by_its_active_fraction_with_its_own_labels():
    z = torch.tensor([[1.0, -1.0, -2.0, 0.5], [2.0, -0.5, -1.0, -0.1], [-1.0, -3.0, -0.2, 0.3]])
    regimes = unit_regimes(z, "relu")  # 3 inputs x 4 units; units 1 and 2 never fire
    assert regimes["measure"] == "active fraction"
    assert regimes["active_frac"] == pytest.approx(4 / 12)
    assert regimes["active_quantiles"]["q50"] == pytest.approx(1 / 3)  # per unit: 2/3, 0, 0, 2/3
    assert regimes["dead_frac"] == pytest.approx(2 / 4)
    assert regimes["phase"] == "mixed"
    # no gain scale and no linear/saturated words for a unit that is exactly linear when on
    assert not {"gain_mean", "linear_frac", "saturated_frac"} & set(regimes)
    assert unit_regimes(_z(1.0), "relu")["phase"] == "mixed"  # half on at a symmetric init
    assert unit_regimes(_z(1.0) + 5, "relu")["phase"] == "dense"  # always on: one affine map
    assert unit_regimes(_z(1.0) - 2, "relu")["phase"] == "sparse"  # mostly off


@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_gelu_and_silu_are_active_where_z_is_positive(act):
    z = torch.tensor([[3.0, -3.0, 0.0, 0.1]], dtype=torch.float64).T
    regimes = unit_regimes(z, act)
    assert regimes["active_frac"] == pytest.approx(2 / 4)
    assert regimes["phase"] == "mixed"


def test_sparsity_label_thresholds():
    assert sparsity_label(0.8) == "dense" and sparsity_label(0.79) == "mixed"
    assert sparsity_label(0.2) == "sparse" and sparsity_label(0.21) == "mixed"


def test_phase_label_thresholds():
    assert phase_label(0.8) == "linear" and phase_label(0.79) == "hybrid"
    assert phase_label(0.2) == "saturated" and phase_label(0.21) == "hybrid"
    assert phase_label(0.5, linear_gain=0.5) == "linear"


def test_rnn_with_tiny_weights_is_linear_from_its_hooks():
    model = build_rnn(RNNConfig(hidden=8, act_fn="tanh", n_ctx=6, seed=0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e-3)
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2, 0, 1, 2]]))
    assert unit_regimes(cache["blocks.0.hook_pre"], "tanh")["linear_frac"] == 1.0


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


def test_lstm_gates_are_counted_each_with_its_own_function():
    """Zero weights and biases: every gate and the candidate sit at 0, where σ and tanh are in their
    linear regime; a forget-gate bias of +20 pins σ(f) at 1 (σ'(20)/σ'(0) ≈ 8e-9): saturated."""
    from models.architectures import build_model, make_model_config, unit_hooks

    model = build_model(make_model_config("lstm", hidden=6, n_ctx=6)).eval()
    with torch.no_grad():
        for p in model.blocks.parameters():
            p.zero_()
        model.blocks[0].cell.bias_ih_l0[6:12] = 20.0  # the forget gate's rows
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2, 0, 1, 2]]))
    regimes = {layer: unit_regimes(cache[hook], act) for layer, (hook, act) in
               unit_hooks(model).items()}  # fmt: skip
    assert {k: v["act"] for k, v in regimes.items()} == {
        "blocks.0.input_gate": "sigmoid", "blocks.0.forget_gate": "sigmoid",
        "blocks.0.candidate": "tanh", "blocks.0.output_gate": "sigmoid", "blocks.0.cell": "tanh",
    }  # fmt: skip
    for layer in ("input_gate", "candidate", "output_gate", "cell"):
        assert regimes[f"blocks.0.{layer}"]["gain_mean"] == pytest.approx(1.0)
        assert regimes[f"blocks.0.{layer}"]["phase"] == "linear"
    forget = regimes["blocks.0.forget_gate"]
    assert forget["phase"] == "saturated" and forget["saturated_frac"] == 1.0
    assert forget["gain_mean"] == pytest.approx(4 * np.exp(-20), rel=1e-3)

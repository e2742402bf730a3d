"""The in-context-learning curve (probes/icl.py) against independent computations: the exact curve
of a mixture from brute-force Bayes over (component, state) paths; a "model" that outputs the exact
predictions reproduces the exact curve (enumerated: to rounding; sampled: inside its interval); the
never-learns curve of a one-component mixture is the exact curve; the sentence's numbers."""

import itertools

import numpy as np
import pytest
import torch

from hmm import HMM, Mixture, load_process
from hmm.information import optimal_loss
from probes import icl


def _two_state(p: float, q: float, name: str) -> HMM:
    """A 2-state, 2-symbol HMM: state 0 emits 0 w.p. p, state 1 emits 1 w.p. q; emitting x moves
    to state x."""
    T = np.zeros((2, 2, 2))
    T[0, 0, 0], T[1, 0, 1] = p, 1 - p
    T[1, 1, 1], T[0, 1, 0] = q, 1 - q
    return HMM(T, name=name)


@pytest.fixture(scope="module")
def tiny_mixture() -> Mixture:
    return Mixture([_two_state(0.9, 0.8, "sticky"), _two_state(0.2, 0.3, "flippy")], [0.4, 0.6])


def brute_force_curve(mix: Mixture, length: int) -> np.ndarray:
    """H(X_t | X_<t), t < length, from P(word) summed over every (component, state path)."""
    def prob(word) -> float:
        total = 0.0
        for w, c in zip(mix.weights, mix.components, strict=True):
            for path in itertools.product(range(c.n_states), repeat=len(word) + 1):
                p = w * c.initial[path[0]]
                for t, x in enumerate(word):
                    p *= c.T[x, path[t], path[t + 1]]
                total += p
        return total

    curve = []
    for t in range(length):
        h = 0.0
        for word in itertools.product(range(mix.n_symbols), repeat=t + 1):
            joint, prefix = prob(word), prob(word[:-1])
            if joint > 0:
                h -= joint * np.log(joint / prefix)
        curve.append(h)
    return np.array(curve)


def test_exact_mixture_curve_equals_brute_force_bayes_over_paths(tiny_mixture):
    np.testing.assert_allclose(optimal_loss(tiny_mixture, 6), brute_force_curve(tiny_mixture, 6),
                               atol=1e-12)


def exact_forward(process):
    """A "model" whose logits are the log of the exact next-token distribution."""
    def forward(tokens: torch.Tensor) -> torch.Tensor:
        p = process.predictive(process.beliefs(tokens.numpy()))
        return torch.from_numpy(np.log(np.maximum(p, 1e-300)))
    return forward


def test_a_model_with_exact_predictions_has_the_exact_curve(tiny_mixture):
    out = icl.icl_curve(tiny_mixture, 7, exact_forward(tiny_mixture))
    assert out["inputs"]["mode"] == "enumerated" and out["model_ci95_low"] is None
    np.testing.assert_allclose(out["model_loss_by_position"], out["exact_loss_by_position"],
                               atol=1e-12)
    np.testing.assert_allclose(out["exact_loss_by_position"],
                               brute_force_curve(tiny_mixture, 8)[1:], atol=1e-12)
    assert out["close_from"] == 0 and abs(out["max_excess"]) < 1e-12
    # the filter that never learns is above the exact curve after the first tokens, and the
    # exact model closes all of its gap at the last position
    never = np.array(out["never_learns"]["loss_by_position"])
    assert (never[2:] > np.array(out["exact_loss_by_position"])[2:] + 1e-4).all()
    assert out["gain_closed"] == pytest.approx(1.0)
    assert "never learns in context" in icl.icl_sentence(out)


def test_sampled_inputs_bracket_the_exact_curve(monkeypatch):
    mess3 = load_process("mess3")
    monkeypatch.setattr(icl, "enumerable", lambda process, n: False)
    out = icl.icl_curve(mess3, 6, exact_forward(mess3), n_sampled=3000)
    assert out["inputs"] == {"mode": "sampled", "sequences": 3000, "length": 6, "seed": 0}
    exact = np.array(out["exact_loss_by_position"])
    low, high = np.array(out["model_ci95_low"]), np.array(out["model_ci95_high"])
    assert (low <= exact + 2e-3).all() and (exact - 2e-3 <= high).all()
    assert out["never_learns"] is None and out["gain_closed"] is None


def test_one_component_filter_of_a_mixture_is_exact_and_foreign_symbols_are_infinite():
    mess3 = load_process("mess3")
    mix = Mixture([mess3, _two_state(0.9, 0.8, "binary")], [0.5, 0.5])
    tokens, weights, _ = icl.icl_inputs(mix, 4)
    binary = icl.filter_losses(mix, mix.components[1], tokens)
    assert np.isinf(binary[(tokens == 2).any(axis=1)]).any()
    never = icl.never_learns(mix, tokens, weights)
    assert never["component"] == 0 and never["mean_by_component"][1] is None
    alone = Mixture([mess3], [1.0])
    t1, w1, _ = icl.icl_inputs(alone, 5)
    np.testing.assert_allclose(icl.never_learns(alone, t1, w1)["loss_by_position"],
                               optimal_loss(mess3, 6)[1:], atol=1e-10)


def test_closeness_and_the_sentence_quote_the_curves():
    exact = np.array([1.0, 0.8, 0.7, 0.65])
    model = exact + np.array([0.05, 0.02, 0.005, 0.001])
    never = {"name": "c", "loss_by_position": [1.0, 0.9, 0.85, 0.85]}
    found = icl.closeness(model, exact, never)
    assert found["close_from"] == 2 and found["max_excess_position"] == 0
    assert found["gain_closed"] == pytest.approx((0.85 - 0.651) / 0.2)
    assert icl.closeness(exact + 0.02, exact, None)["close_from"] is None
    text = icl.icl_sentence({**found, "positions": [0, 1, 2, 3], "never_learns": never,
                             "excess_by_position": list(model - exact),
                             "exact_loss_by_position": list(exact)})
    assert text.startswith("From position t = 2 on") and "99.5 %" in text


def test_bootstrap_interval_of_constant_rows_is_a_point():
    low, high = icl.bootstrap_interval(np.ones((50, 3)) * 0.5)
    np.testing.assert_allclose(low, 0.5)
    np.testing.assert_allclose(high, 0.5)


def test_a_mixture_run_gets_icl_json_matching_its_exact_evaluation_and_a_section(tmp_path):
    """A tiny RNN on a mixture: icl.json's final curve (probes/icl.py's own forward) equals the
    trainer's exact_loss_by_position at the last checkpoint (models/loss.py), every exact checkpoint
    is carried, and the report shows the section with the sentence."""
    import html
    import json

    from experiments.icl_report import icl_section
    from models.training import train_run
    from probes.run_files import read_icl

    run = tmp_path / "run"
    spec = {"kind": "mixture", "components": ["mess3", "mess3:x=0.15,a=0.6"], "weights": [0.5, 0.5]}
    train_run(spec, run, arch="rnn", tokens=3000, options={"hidden": 4, "n_ctx": 6,
                                                           "exact_eval": "every"})
    out = icl.icl_run(run)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    exact = [m for m in lines if "exact_loss_by_position" in m]
    assert len(out["checkpoints"]) == len(exact) >= 2
    np.testing.assert_allclose(out["model_loss_by_position"], exact[-1]["exact_loss_by_position"],
                               atol=1e-9)
    np.testing.assert_allclose(np.mean(exact[-1]["exact_loss_by_position"]),
                               exact[-1]["exact_loss"], atol=1e-12)
    assert out["never_learns"]["name"] and (run / "figures" / "icl.png").is_file()
    page = "".join(icl_section(run, read_icl(run)))  # write_report calls it in one line
    assert "In-context learning: the loss by position" in page
    assert html.escape(out["sentence"]) in page

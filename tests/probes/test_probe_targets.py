"""Sampled probe inputs against the enumeration, the bootstrap intervals' scaling, and per-target
probes (a mixture's component posterior, a product's factor beliefs) on known answers."""

from __future__ import annotations

import numpy as np

from hmm import load_process
from hmm.composite import Mixture, Product
from probes.activations import Activations, probe_inputs
from probes.belief_evidence import r2_scorer, score_bands
from probes.belief_probe import r2_score
from probes.belief_study import centred_log, probe_features, references, score_activations

LENGTH = 6


def _optimal_logit_probe(process, **kwargs):
    """Inputs, refs and the held-out predictions of the probe from the exact optimal logits."""
    inputs = probe_inputs(process, LENGTH, **kwargs)
    refs = references(inputs)
    scores, pred = probe_features(centred_log(process.predictive(inputs.beliefs)), inputs, refs)
    return inputs, refs, scores, pred


def test_sampled_inputs_agree_with_the_enumeration_within_their_intervals():
    mess3 = load_process("mess3")
    inputs, refs, exact, pred = _optimal_logit_probe(mess3)
    sampled_inputs, sampled_refs, sampled, sampled_pred = _optimal_logit_probe(
        mess3, max_enumerated=1, n_samples=8000)  # force sampling: 3**6 = 729 > 1
    assert inputs.exact and not sampled_inputs.exact
    assert sampled_inputs.summary()["mode"] == "sampled"
    # a sample weighs prefixes by probability: the enumeration's probability-weighted score
    per_count = refs.prob / refs.count
    enumerated = score_bands(inputs, refs, {"x": lambda rows, w: r2_score(
        refs.beliefs[rows], pred[rows], w * per_count[rows])})
    drawn = score_bands(sampled_inputs, sampled_refs,
                        {"x": r2_scorer(sampled_refs.beliefs, sampled_pred)})
    assert enumerated["unit"] == "subtree" and drawn["unit"] == "sequence"
    assert drawn["units"] == sampled_inputs.summary()["heldout_sequences"]
    (lo, hi), (e_lo, e_hi) = drawn["bands"]["x"], enumerated["bands"]["x"]
    assert lo <= sampled["r2_heldout"] <= hi and e_lo <= exact["r2_heldout_weighted"] <= e_hi
    assert lo <= e_hi and e_lo <= hi  # the intervals overlap
    assert abs(sampled["r2_heldout"] - exact["r2_heldout_weighted"]) < 2e-3


def test_intervals_shrink_like_one_over_root_n():
    """A fixed predictor (beliefs plus seeded noise, no fit) on 16x more sequences: the interval
    narrows about 4x (sampling error ~ 1 / sqrt(n))."""
    mess3 = load_process("mess3")
    widths = []
    for n in (1000, 16000):
        inputs = probe_inputs(mess3, LENGTH, max_enumerated=1, n_samples=n, split="random")
        refs = references(inputs)
        noisy = refs.beliefs + np.random.default_rng(1).normal(scale=0.1, size=refs.beliefs.shape)
        band = score_bands(inputs, refs, {"x": r2_scorer(refs.beliefs, noisy)},
                           replicates=200)["bands"]["x"]
        assert band[0] <= r2_score(refs.beliefs, noisy, refs.count) <= band[1]
        widths.append(band[1] - band[0])
    assert 3.0 < widths[0] / widths[1] < 5.5


def _exact_belief_record(process, length: int):
    """score_activations on a stand-in model whose one hook is the exact belief."""
    inputs = probe_inputs(process, length, split="random")
    acts = Activations(hooks={"x": inputs.beliefs.astype(np.float32)},
                       next_token=process.predictive(inputs.beliefs).astype(np.float32))
    record, fits = score_activations(acts, inputs, ["x"])
    return inputs, record, fits


def test_product_factor_beliefs_are_read_from_the_exact_joint_belief():
    product = Product([load_process("mess3"), load_process("mess3:x=0.1,a=0.6")])
    inputs, record, fits = _exact_belief_record(product, 4)
    targets = record["layers"]["x"]["targets"]
    assert set(targets) == {"belief", "factors"}
    assert targets["factors"]["r2_heldout"] > 0.9999  # marginals are linear in the joint
    assert targets["belief"]["r2_heldout"] == record["layers"]["x"]["r2_heldout"]
    assert fits["x"].targets["factors"].shape[1] == 6


def test_a_products_factor_figure_draws_each_factor_with_its_own_score():
    """The factor view the probe step writes for a product: one row per factor, each titled with
    that factor's held-out R² (here the exact belief's probe: 1)."""
    from probes.belief_figures import factor_comparison
    from probes.belief_study import _factor_views

    product = Product([load_process("mess3"), load_process("mess3:x=0.1,a=0.6")])
    inputs, record, fits = _exact_belief_record(product, 4)
    refs = references(inputs)
    assert _factor_views(load_process("mess3"), refs, fits, ["x"]) is None
    true, pred, weights, groups, hook = _factor_views(product, refs, fits, ["x"])
    assert list(groups) == ["factor 0: mess3(x=0.05,a=0.85)", "factor 1: mess3(x=0.1,a=0.6)"]
    assert r2_score(true[:, groups["factor 1: mess3(x=0.1,a=0.6)"]],
                    pred[:, groups["factor 1: mess3(x=0.1,a=0.6)"]], weights) > 0.9999
    png = factor_comparison(true, pred, weights, groups, hook, tokens=100)
    assert png.startswith(b"\x89PNG")


def test_mixture_component_posterior_is_read_from_the_exact_belief():
    mixture = Mixture([load_process("mess3"), load_process("mess3:x=0.1,a=0.6")], [0.3, 0.7])
    _, record, _ = _exact_belief_record(mixture, 6)
    component = record["layers"]["x"]["targets"]["component"]
    assert component["r2_heldout"] > 0.9999 and component["ci95"] is None


def test_plain_processes_have_no_target_scores():
    _, record, fits = _exact_belief_record(load_process("mess3"), 4)
    assert "targets" not in record["layers"]["x"] and fits["x"].targets == {}

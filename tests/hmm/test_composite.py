"""Mixtures and products against independent computations: brute-force Bayes over (component, state)
paths, the factors' own filters, losses from enumerated words; refusals; spec round trips."""

import itertools

import numpy as np
import pytest

from hmm import InvalidInput, Mixture, Product, load_process
from hmm.information import entropy
from hmm.information import optimal_loss as generic_optimal_loss
from hmm.spec import to_spec


@pytest.fixture(scope="module")
def mixture():
    return load_process({"kind": "mixture", "components": ["mess3", "rrxor"],
                         "weights": [0.3, 0.7]})


def bayes_over_paths(mix: Mixture, seq) -> np.ndarray:
    """P(component k, state j | seq) after each token, summing every hidden path of every
    component (classical components)."""
    out = np.zeros((len(seq), mix.n_states))
    for w, c, block in zip(mix.weights, mix.components, mix.blocks, strict=True):
        paths = np.array(list(itertools.product(range(c.n_states), repeat=len(seq) + 1)))
        weight = w * c.initial[paths[:, 0]]
        for t, x in enumerate(seq):
            step = c.T[x] if x < c.n_symbols else np.zeros((c.n_states, c.n_states))
            weight = weight * step[paths[:, t], paths[:, t + 1]]
            # each partial path appears once per continuation of the states after t + 1
            out[t, block] = np.bincount(paths[:, t + 1], weights=weight, minlength=c.n_states) \
                / c.n_states ** (len(seq) - t - 1)
    return out / out.sum(axis=1, keepdims=True)


def test_mixture_beliefs_equal_bayes_over_component_state_paths(mixture):
    tokens = np.array([[0, 1, 1, 0, 1], [0, 2, 1, 0, 0], [1, 1, 0, 1, 0], [2, 2, 2, 2, 2]])
    beliefs = mixture.beliefs(tokens, on_zero="nan")
    posterior = mixture.probe_targets(beliefs)["component"]
    for i, seq in enumerate(tokens):
        expected = bayes_over_paths(mixture, seq)
        np.testing.assert_allclose(beliefs[i], expected, atol=1e-12)
        by_component = np.stack([expected[:, b].sum(axis=1) for b in mixture.blocks], axis=1)
        np.testing.assert_allclose(posterior[i], by_component, atol=1e-12)
    assert posterior[1, 1, 0] == pytest.approx(1.0)  # RRXOR never emits symbol 2


def test_mixture_optimal_loss_is_the_in_context_curve_from_enumerated_words(mixture):
    """H(X_t | X_<t) = sum_w P(w) H(P(. | w)) with P(w) = sum_k w_k P_k(w), from the components'
    own log-probabilities: no mixture code involved."""
    length = 6
    expected = []
    for t in range(length):
        words = np.array(list(itertools.product(range(3), repeat=t + 1)))
        joint = sum(w * np.exp(c.log_prob(np.minimum(words, c.n_symbols - 1)))
                    * (words < c.n_symbols).all(axis=1)
                    for w, c in zip(mixture.weights, mixture.components, strict=True))
        joint = joint.reshape(-1, 3)  # (prefixes, next symbol)
        prefix = joint.sum(axis=1)
        alive = prefix > 0
        expected.append(float(prefix[alive] @ entropy(joint[alive] / prefix[alive, None])))
    np.testing.assert_allclose(mixture.optimal_loss(length), expected, atol=1e-12)


def test_mixture_entropy_rate_is_the_weighted_rate_and_the_curve_stays_above_it():
    mix = Mixture([load_process("rrxor"), load_process("z1r")], [0.4, 0.6])
    rate = 0.4 * load_process("rrxor").entropy_rate() + 0.6 * load_process("z1r").entropy_rate()
    assert mix.entropy_rate() == pytest.approx(rate, abs=1e-15)
    curve = mix.optimal_loss(10)
    assert (curve > rate).all() and curve[0] == pytest.approx(np.log(2))


def test_mixture_samples_one_component_per_sequence(mixture):
    tokens, states = mixture.sample(4000, 12, seed=3)
    component = (states[:, 0] >= mixture.blocks[1].start).astype(int)
    assert (component[:, None] == (states >= mixture.blocks[1].start)).all()
    assert np.mean(component == 1) == pytest.approx(0.7, abs=0.03)
    assert (mixture.T[tokens, states[:, :-1], states[:, 1:]] > 0).all()
    assert np.array_equal(tokens, mixture.sample(4000, 12, seed=3)[0])
    assert not (tokens[component == 1] == 2).any()
    groups = mixture.target_groups()["belief"]
    assert list(groups.values()) == mixture.blocks and "component 1: rrxor" in list(groups)[1]


@pytest.fixture(scope="module")
def product():
    return load_process({"kind": "product",
                         "factors": ["mess3", "mess3:x=0.15,a=0.6", "bloch_walk"]})


def test_product_beliefs_are_the_outer_product_of_the_factors(product):
    tokens, states = product.sample(300, 7, seed=5)
    assert states is None  # the Bloch walk has no hidden states
    joint = product.beliefs(tokens)
    parts = [f.beliefs(t) for f, t in zip(product.factors, product.factor_tokens(tokens),
                                          strict=True)]
    outer = np.einsum("nti,ntj,ntk->ntijk", *parts).reshape(joint.shape)
    np.testing.assert_allclose(joint, outer, atol=1e-12)
    factors = product.probe_targets(joint)["factors"]
    np.testing.assert_allclose(factors, np.concatenate(parts, axis=-1), atol=1e-12)
    groups = product.target_groups()["factors"]
    assert [g.stop - g.start for g in groups.values()] == [3, 3, 3]
    np.testing.assert_allclose(product.log_prob(tokens), sum(
        f.log_prob(t) for f, t in zip(product.factors, product.factor_tokens(tokens),
                                      strict=True)), atol=1e-10)


def test_product_optimal_loss_is_the_sum_of_the_factors(product):
    total = product.optimal_loss(6)
    np.testing.assert_allclose(total, sum(f.optimal_loss(6) for f in product.factors), atol=0)
    # the generic computation on the joint tensor (27 states, 36 symbols) agrees
    np.testing.assert_allclose(generic_optimal_loss(product, 3), total[:3], atol=1e-12)
    small = Product([load_process("even"), load_process("golden_mean")])
    assert small.entropy_rate() == pytest.approx(sum(f.entropy_rate() for f in small.factors))


def test_product_tokens_are_tuples_in_c_order(product):
    assert product.symbol_shape == (3, 3, 4) and product.n_symbols == 36
    assert product.symbols[1] == "(0,0,z-)" and product.symbols[4] == "(0,1,z+)"
    parts = product.factor_tokens(np.array([[0, 1, 4, 35]]))
    assert [p.tolist() for p in parts] == [[[0, 0, 0, 2]], [[0, 0, 1, 2]], [[0, 1, 0, 3]]]
    assert product.joint_tokens(parts).tolist() == [[0, 1, 4, 35]]


def test_a_classical_product_samples_hidden_states_in_the_same_order():
    p = Product([load_process("rrxor"), load_process("z1r")])
    tokens, states = p.sample(500, 10, seed=1)
    assert (p.T[tokens, states[:, :-1], states[:, 1:]] > 0).all() and p.is_classical


@pytest.mark.parametrize("spec,match", [
    ({"kind": "mixture", "components": ["mess3", "rrxor"], "weights": [0.5, 0.6]},
     r"mixture weights \[0\.5, 0\.6\] sum to 1\.1; they must sum to 1"),
    ({"kind": "mixture", "components": ["mess3", "rrxor"], "weights": [1.0]},
     r"must be 2 non-negative numbers, one per component"),
    ({"kind": "mixture", "components": ["mess3"]}, r"a mixture needs 'weights'"),
    ({"kind": "mixture", "components": ["mess4"], "weights": [1]},
     r"components\[0\]: unknown process 'mess4'"),
    ({"kind": "product", "factors": []}, r"'factors' must be a non-empty list"),
    ({"kind": "product", "factors": ["mess3"] * 8},
     r"a product of 8 factors \(6,561 joint symbols, 6,561 joint states.* needs .* GB"),
    ({"kind": "triple"}, r"unknown spec kind 'triple'; kinds are hmm, ghmm, mixture, product"),
    ({"kind": "ghmm", "transitions": {"0": [[0.5, 0.0], [0.0, 0.5]], "1": [[0.5, 0], [0, 0.5]]}},
     r"2 independent left eigenvectors for eigenvalue 1"),
    ({"kind": "ghmm", "transitions": {"a": [[1.2, -0.5], [0.0, 0.1]], "b": [[0.3, 0], [0, 0.9]]},
      "initial": [1, 0]}, r"the word 'a b' \(length 2\) has probability -0\.09 < 0"),
])
def test_bad_composite_and_ghmm_specs_say_what_is_wrong(spec, match):
    with pytest.raises(InvalidInput, match=match):
        load_process(spec)


def test_a_product_too_large_for_this_machine_is_refused_before_allocating(monkeypatch):
    monkeypatch.setattr("hmm.memory.available_memory", lambda: 10**8)  # 0.1 GB
    assert load_process({"kind": "product", "factors": ["mess3"] * 3}).n_states == 27
    with pytest.raises(InvalidInput, match=r"needs 0\.3 GB, this machine has 0\.1 GB"):
        load_process({"kind": "product", "factors": ["mess3"] * 5})


def test_composite_specs_round_trip_and_nest(tmp_path):
    nested = {"kind": "mixture", "name": "nested", "weights": [0.25, 0.75], "components": [
        {"kind": "product", "factors": ["even", "golden_mean"]}, "mess3:x=0.1,a=0.7"]}
    p = load_process(nested)
    assert p.name == "nested" and p.n_states == 4 + 3 and p.n_symbols == 4
    again = load_process(to_spec(p))
    assert to_spec(again) == to_spec(p) and np.array_equal(again.T, p.T)
    (tmp_path / "factor.json").write_text('{"transitions": {"0": [[0.5, 0.5], [1, 0]], '
                                          '"1": [[0, 0], [0, 0]]}}')
    (tmp_path / "prod.json").write_text('{"kind": "product", "factors": ["factor.json", "z1r"]}')
    q = load_process(str(tmp_path / "prod.json"))  # a relative part is read beside the spec
    assert q.name == "prod" and q.state_shape == (2, 3)

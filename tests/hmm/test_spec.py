"""load_process: built-in names and parameters, JSON spec files, round trips, and clear errors."""

import json
import re

import numpy as np
import pytest

from hmm import BUILTINS, GHMM, HMM, InvalidInput, load_process, save_process
from hmm.builtins import CLASSICAL


@pytest.mark.parametrize("name", list(BUILTINS))
def test_every_builtin_loads_with_defaults(name):
    p = load_process(name)
    assert isinstance(p, HMM if name in CLASSICAL else GHMM) and p.stationary is not None
    assert isinstance(p, HMM) == (name in CLASSICAL)


def test_parameters_override_defaults():
    p = load_process("mess3:x=0.1, a=0.6")
    q = load_process("mess3")
    assert not np.allclose(p.T, q.T)
    assert load_process("random:states=5,symbols=4,seed=2").T.shape == (4, 5, 5)


@pytest.mark.parametrize("spec,match", [
    ("mess4", r"unknown process 'mess4'; built-ins are mess3, rrxor"),
    ("mess3:z=1", r"mess3 has no parameter 'z'; it takes x=0.05 .*a=0.85"),
    ("mess3:x", r"must look like key=value, e.g. mess3:x=0.05,a=0.85"),
    ("mess3:x=abc", r"x='abc' is not a number"),
    ("mess3:x=0.7", r"x=0.7 is out of range; x must be in \[0, 0.5\]"),
    ("random:states=2.5", r"states='2.5' is not an integer"),
    ("mess3:x=0", r"not a valid ergodic HMM"),
    ("no/such/file.json", r"does not exist"),
])
def test_bad_specs_say_what_exists(spec, match):
    with pytest.raises(InvalidInput, match=match):
        load_process(spec)


@pytest.mark.parametrize("name", ["mess3", "rrxor", "random:states=4,symbols=3,seed=9,sparsity=.4"])
def test_save_and_load_gives_the_identical_tensor(tmp_path, name):
    p = load_process(name)
    path = save_process(p, tmp_path / "spec.json")
    q = load_process(str(path))
    assert np.array_equal(p.T, q.T) and q.name == p.name
    assert q.states == p.states and q.symbols == p.symbols
    assert q.to_spec() == p.to_spec()


def test_design_example_spec_and_initial_round_trip(tmp_path):
    spec = {"name": "my-process", "states": ["A", "B"], "symbols": ["0", "1"],
            "transitions": {"0": [[0.5, 0.0], [0.0, 0.5]], "1": [[0.0, 0.5], [0.5, 0.0]]},
            "initial": [0.25, 0.75]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(spec))
    p = load_process(path)
    assert p.name == "my-process" and np.allclose(p.initial, [0.25, 0.75])
    assert p.to_spec() == spec


@pytest.mark.parametrize("content,match", [
    ("{not json", r"is not valid JSON"),
    ('[1, 2]', r"must be a JSON object"),
    ('{"transitions": {"0": [[0.5, 0.5], [0.5, 0.4]]}}', r"row 1 \(state '1'\) sums to 0.9"),
    ('{"transitions": {"0": [[1.0]], "1": [[0.0, 1.0]]}}', r"must be square"),
    ('{"transitions": {"0": [[0.5]], "1": [[0.5]]}, "colour": 1}',
     r"unknown spec keys \['colour'\]"),
    ('{"transitions": {"a": [[0.5, 0.5], [1, 0]], "b": [[0, 0], [0, -0.0]]}, "states": ["x"]}',
     r"1 states names given but T has 2"),
    ('{"transitions": {"0": [["a", 1]]}}', r"transitions\['0'\]\[0\]\[0\] is \"a\", not a number"),
])
def test_malformed_or_invalid_files_raise_invalid_input(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=match):
        load_process(str(path))


@pytest.mark.parametrize("entry,shown", [
    ("true", "true"), ("false", "false"), ('"1"', '"1"'), ("null", "null"), ("[1]", "[1]"),
])
def test_non_numbers_in_a_spec_are_refused_not_coerced(tmp_path, entry, shown):
    # JSON true would otherwise be read as the probability 1.0, and "1" as 1.0
    content = '{"transitions": {"0": [[0.5, 0.0], [0.0, 0.5]], "1": [[0.0, 0.5], [%s, 0.0]]}}'
    path = tmp_path / "bad.json"
    path.write_text(content % entry)
    with pytest.raises(InvalidInput, match=r"transitions\['1'\]\[1\]\[0\] is " + re.escape(shown)
                       + ", not a number"):
        load_process(str(path))


def test_a_boolean_initial_is_refused(tmp_path):
    spec = {"transitions": {"0": [[0.5, 0.0], [0.0, 0.5]], "1": [[0.0, 0.5], [0.5, 0.0]]},
            "initial": [True, 0]}
    with pytest.raises(InvalidInput, match=r"initial\[0\] is true, not a number"):
        load_process(spec)
    assert np.array_equal(load_process({**spec, "initial": [1, 0]}).initial, [1.0, 0.0])


@pytest.mark.parametrize("T", [np.ones((1, 1, 1), dtype=bool), [[["1"]]], [[[True]]]])
def test_hmm_refuses_boolean_and_string_tensors(T):
    with pytest.raises(InvalidInput, match="must hold numbers"):
        HMM(T)


@pytest.mark.parametrize("name", ["noisy_4_cycle", "mixture_mess3", "product_three_mess3"])
def test_the_example_specs_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "examples" / f"{name}.json"
    p = load_process(str(path))
    assert p.kind == {"noisy_4_cycle": "hmm", "mixture_mess3": "mixture",
                      "product_three_mess3": "product"}[name]

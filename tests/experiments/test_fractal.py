"""`beliefgeo processes` and `beliefgeo fractal` through the CLI entry point, bad input included."""

import json

import numpy as np
import pytest

from experiments.cli import main
from hmm import BUILTINS, load_process


def test_processes_lists_every_builtin_with_parameters(capsys):
    assert main(["processes"]) == 0
    out = capsys.readouterr().out
    for name in BUILTINS:
        assert name in out
    assert "x=0.05" in out and "a=0.85" in out


@pytest.mark.parametrize("process,depth", [("mess3", 4), ("rrxor", 8)])
def test_fractal_writes_png_and_json(tmp_path, capsys, process, depth):
    out = tmp_path / process
    args = ["fractal", process, "--depth", str(depth), "--points", "3000", "--out", str(out)]
    assert main(args) == 0
    assert (out / "fractal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "fractal.json").read_text())
    p = load_process(process)
    assert summary["depth"] == depth and summary["points"] == 3000
    assert summary["n_nodes"] == p.msp(depth).n_nodes
    assert summary["optimal_loss"][:3] == pytest.approx(p.optimal_loss(3).tolist(), abs=1e-12)
    assert summary["entropy_rate"] == pytest.approx(p.entropy_rate())
    assert set(summary["dimension"]) >= {"dimension", "fit_range", "scales", "counts"}
    if process == "mess3":
        assert summary["n_nodes"] == (3**5 - 1) // 2 and summary["statistical_complexity"] is None
    else:
        assert summary["n_distinct_beliefs"] == 36 and summary["statistical_complexity"] > 0
    assert not list(out.glob(".*.tmp"))


def test_default_depth_is_sized_to_the_process():
    from experiments.fractal import default_depth

    assert default_depth(load_process("mess3")) == 11  # 265,720 nodes
    assert default_depth(load_process("rrxor")) == 17


@pytest.mark.parametrize("args,match", [
    (["fractal", "mess4", "--out", "{tmp}/o"], "unknown process 'mess4'"),
    (["fractal", "mess3:x=2", "--out", "{tmp}/o"], "out of range"),
    (["fractal", "{tmp}/bad.json", "--out", "{tmp}/o"], "not valid JSON"),
    (["fractal", "{tmp}/missing.json", "--out", "{tmp}/o"], "does not exist"),
    (["fractal", "mess3", "--out", "{tmp}/bad.json"], "is not a directory"),
    (["fractal", "mess3", "--depth", "-1", "--out", "{tmp}/o"], "negative"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, match):
    (tmp_path / "bad.json").write_text("{oops")
    try:
        code = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    except SystemExit as exc:  # argparse rejects malformed flags itself, also with exit 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def _largest_depth(V: int, S: int, free: int) -> int:
    # explicit formula: the full tree to depth d has (V^(d+1) - 1) / (V - 1) nodes
    per_node = 3 * 8 * S + 7 * 8
    d = 0
    while (V ** (d + 2) - 1) // (V - 1) * per_node <= free:
        d += 1
    return d


@pytest.mark.parametrize("depth", ["30", "1000000000"])
def test_a_depth_that_cannot_fit_is_refused_before_allocating(tmp_path, capsys, monkeypatch, depth):
    import hmm.memory

    monkeypatch.setattr(hmm.memory, "available_memory", lambda: 2**30)
    out = tmp_path / "o"
    assert main(["fractal", "mess3", "--depth", depth, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # 1 GiB at 128 bytes a node: (3^15 - 1) / 2 = 7,174,453 nodes fit, (3^16 - 1) / 2 do not
    assert _largest_depth(3, 3, 2**30) == 14
    assert err.strip().endswith("the largest that fits is --depth 14")
    assert not out.exists()  # refused before anything was created


def test_a_point_count_that_cannot_fit_is_refused(tmp_path, capsys, monkeypatch):
    import hmm.memory

    monkeypatch.setattr(hmm.memory, "available_memory", lambda: 2**30)
    out = tmp_path / "o"
    assert main(["fractal", "mess3", "--points", "1000000000000", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    per_point = 2 * 8 + 6 * 8 * 3 + 3 * 8  # tokens, states, six belief copies, three indices
    assert err.strip().endswith(f"the largest that fits is --points {2**30 // per_point:,}")
    assert not out.exists()


def test_the_memory_estimate_bounds_the_real_msp():
    from experiments.fractal import msp_bytes

    p = load_process("mess3")
    m = p.msp(6)
    real = m.beliefs.nbytes + m.probs.nbytes + m.depths.nbytes + m.parents.nbytes
    assert msp_bytes(p, 6) >= real + m.symbols.nbytes
    assert msp_bytes(p, 6) == m.n_nodes * (3 * 8 * 3 + 7 * 8)


@pytest.mark.parametrize("process,kind", [("bloch_walk", "bloch"), ("moon", "pca")])
def test_ghmm_states_are_drawn_where_they_live(tmp_path, capsys, process, kind):
    from hmm.plots import state_chart

    out = tmp_path / process
    assert main(["fractal", process, "--depth", "4", "--points", "2000", "--out", str(out)]) == 0
    assert (out / "fractal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "fractal.json").read_text())
    p = load_process(process)
    assert summary["spec"]["kind"] == "ghmm" and summary["entropy_rate"] == pytest.approx(
        p.entropy_rate())
    states = p.msp(4).unique(8).beliefs
    chart = state_chart(p, states)
    assert chart.kind == kind
    if kind == "bloch":  # (1, r_x, r_z): the chart reads r_x and r_z, and states stay in the disk
        np.testing.assert_array_equal(chart.xy(states), states[:, 1:])
        assert np.linalg.norm(chart.xy(states), axis=1).max() <= 1 + 1e-9
    else:  # the states span a plane: two principal axes hold all their variance
        xy = chart.xy(states)
        centred = states - states.mean(axis=0)
        assert xy.var(axis=0).sum() == pytest.approx(centred.var(axis=0).sum())


def test_a_product_is_drawn_factor_by_factor(tmp_path, capsys):
    spec = tmp_path / "prod.json"
    spec.write_text(json.dumps({"kind": "product", "factors": ["even", "bloch_walk"]}))
    out = tmp_path / "o"
    assert main(["fractal", str(spec), "--depth", "3", "--points", "2000", "--out", str(out)]) == 0
    summary = json.loads((out / "fractal.json").read_text())
    p = load_process(summary["spec"])
    assert summary["spec"]["kind"] == "product" and p.n_states == 2 * 3 and p.n_symbols == 2 * 4
    assert summary["n_nodes"] == p.msp(3).n_nodes < 1 + 8 + 64 + 512  # even forbids some words
    assert (out / "fractal.png").stat().st_size > 0


@pytest.mark.parametrize("spec,match", [
    ({"kind": "ghmm", "transitions": {"a": [[1.2, -0.5], [0.0, 0.1]], "b": [[0.3, 0], [0, 0.9]]},
      "initial": [1, 0]}, "the word 'a b' (length 2) has probability -0.09 < 0"),
    ({"kind": "ghmm", "transitions": {"0": [[0.5, 0.0], [0.0, 0.5]], "1": [[0.5, 0], [0, 0.5]]}},
     "2 independent left eigenvectors for eigenvalue 1"),
    ({"kind": "mixture", "components": ["mess3", "rrxor"], "weights": [0.5, 0.6]},
     "they must sum to 1"),
    ({"kind": "product", "factors": ["mess3"] * 8}, "a product of 8 factors"),
])
def test_bad_process_specs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, spec, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "o"
    assert main(["fractal", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()

"""Sweeps: the spec's points and names, bad input before anything starts, the interval formula, and
on a real Ray: a SIGKILLed driver resumes without training a point twice, a failing point leaves
the others complete, a separately started cluster is driven through --address, and the summary's
means and intervals equal a recomputation from the run folders."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from experiments.sweep import POINT_FILE, SEED, expand
from experiments.sweep_summary import band_figure, interval
from hmm.errors import InvalidInput

# an RNN of hidden 8 on a context of 4 (81 input sequences) for 2,000 tokens: seconds per point
TINY = {
    "process": "mess3",
    "arch": "rnn",
    "hidden": 8,
    "n_ctx": 4,
    "tokens": 2000,
    "n_checkpoints": 2,
    "batch_size": 32,
    "warmup_steps": 0,
    "optimizer": "sgd",
    "schedule": "constant",
    "lr": 0.01,
}
DIVERGES = 1e30  # SGD at this rate drives the ReLU RNN's loss to NaN within two steps
T_975_1 = 12.706204736174698  # Student t quantile 0.975 with 1 degree of freedom (tables)


def _spec(tmp_path: Path, axes: dict, base: dict | None = None) -> Path:
    path = tmp_path / f"spec-{len(list(tmp_path.glob('spec-*')))}.json"
    path.write_text(json.dumps({"base": TINY if base is None else base, "axes": axes}))
    return path


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


# ---- without Ray --------------------------------------------------------------------------------
def test_points_cross_the_axes_and_link_linked_ones():
    points = expand(
        {
            "base": {"tokens": 5},
            "axes": {"arch+act_fn": [["rnn", "tanh"], ["transformer", "relu"]], "seed": [0, 1]},
        }  # fmt: skip
    )
    assert [p.name for p in points] == [
        "arch=rnn,act_fn=tanh,seed=0",
        "arch=rnn,act_fn=tanh,seed=1",
        "arch=transformer,act_fn=relu,seed=0",
        "arch=transformer,act_fn=relu,seed=1",
    ]
    assert points[3].settings == {"tokens": 5, "arch": "transformer", "act_fn": "relu", "seed": 1}
    assert points[3].setting == "arch=transformer,act_fn=relu"
    with pytest.raises(InvalidInput):
        expand({"base": {}, "axes": {"seed": [0, 0]}})


def test_a_sweep_whose_every_point_failed_still_draws_its_summary_figure():
    """The summary of failures is what the user reads then; its figure must not be the next one."""
    png = band_figure([{"setting": "seed", "n_seeds": 0, "runs": []}], {}, "all failed")
    assert png.startswith(b"\x89PNG")


def test_interval_is_the_t_interval():
    stats = interval([0.5, 0.7, None, float("nan")])
    mean, sd = 0.6, math.sqrt(0.02)
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(mean)
    assert stats["sd"] == pytest.approx(sd)
    assert stats["ci95_low"] == pytest.approx(mean - T_975_1 * sd / math.sqrt(2))
    assert stats["ci95_high"] == pytest.approx(mean + T_975_1 * sd / math.sqrt(2))
    assert interval([1.0])["sd"] is None and interval([])["mean"] is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "axes, base, message",
    [
        ({"colour": ["red"]}, None, "unknown axis"),
        ({"seed": []}, None, "empty"),
        ({"act_fn": ["tanh", "gelu"]}, None, "act_fn=gelu"),
        ({"hidden": [8, -1]}, None, "hidden=-1"),
        ({"process": ["mess3", "nonsense"]}, None, "process=nonsense"),
        ({"config": ["no-such-recipe"]}, None, "recipe"),
        ({"seed": [0]}, {"arch": "rnn"}, "no process"),
        ({"llc": [True, False]}, None, "llc is a base key, not an axis"),
        ({"seed": [0]}, {**TINY, "llc": "yes"}, "llc must be true, false or an object"),
        ({"seed": [0]}, {**TINY, "llc": {"lr": 1e-3}},
         "give llc.lr, llc.n_beta and llc.localization together"),
        ({"seed": [0]}, {**TINY, "llc": {"checkpoints": 0}},
         "llc.checkpoints must be an integer >= 1 or 'all'"),
        ({"seed": [0]}, {**TINY, "llc": {"draws": 2}}, "LLC draws must be an integer >= 8"),
        ({"seed": [0]}, {**TINY, "llc": {"settings_from": "missing.json"}}, "does not exist"),
    ],
)
def test_bad_spec_exits_2_before_anything_starts(tmp_path, capsys, axes, base, message):
    out = tmp_path / "out"
    assert _exit_code(["sweep", str(_spec(tmp_path, axes, base)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_different_sweep_or_an_unreachable_address_exits_2_and_loses_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text('{"format": "beliefgeo-sweep/1", "axes": {"seed": [7]}}')
    (out / "notes.txt").write_text("mine")
    spec = _spec(tmp_path, {"seed": [0]})
    assert _exit_code(["sweep", str(spec), "--out", str(out)]) == 2
    assert "different sweep" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sweep.json"]
    assert (out / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    address = f"127.0.0.1:{_free_port()}"
    assert _exit_code(["sweep", str(spec), "--out", str(fresh), "--address", address]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach" in err
    assert not fresh.exists()


@pytest.mark.parametrize("seeds", ["0", "x", "-2"])
def test_reproduce_seeds_bad_input_exits_2(seeds, capsys):
    assert _exit_code(["reproduce", "mess3", "--seeds", seeds]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--seeds" in err


def test_seed_folders_written_before_the_llc_option_still_resume(tmp_path):
    from dataclasses import replace

    from experiments.studies import STUDIES
    from experiments.sweep import claim_folder, seeds_record
    from probes.llc_settings import LLCPlan

    (tmp_path / "seed=0").mkdir()
    before = seeds_record(STUDIES["mess3"], [0, 1, 2])  # a study without the LLC ...
    assert "llc" not in before["study"]  # ... is recorded as it was before the option existed
    (tmp_path / "sweep.json").write_text(json.dumps(before))
    claim_folder(tmp_path, seeds_record(STUDIES["mess3"], [0, 1, 2]))  # resumes
    with pytest.raises(InvalidInput, match="holds a different sweep"):
        claim_folder(tmp_path, seeds_record(replace(STUDIES["mess3"], llc=LLCPlan()), [0, 1, 2]))


def test_a_calibrating_sweep_calibrates_once_and_measures_every_other_point_alike(
    tmp_path, monkeypatch
):
    """The first point runs alone and calibrates; when it fails the next one does; every later
    point gets the calibrated settings (LLCPlan.like) and no grid, and runs in parallel."""
    from experiments import sweep
    from experiments.pipeline import Study
    from probes.llc_settings import LLCPlan

    points = expand({"base": {}, "axes": {SEED: [0, 1, 2, 3]}})
    plans = {p.name: Study(process="mess3", llc=LLCPlan()) for p in points}
    calls = []

    def drive(ray, todo, plans, out, parallel, title, already, total=None):
        calls.append(([p.name for p in todo], parallel, already, total,
                      [plans[p.name].llc.grid is None for p in todo]))  # fmt: skip
        for p in todo:
            if p.name == "seed=0":  # fails before its LLC: no llc.json, no point.json
                continue
            (out / p.name).mkdir(parents=True)
            settings = plans[p.name].llc.settings.to_dict()
            if plans[p.name].llc.grid is not None:  # calibrates: its own pick
                settings.update(lr=4.2e-4, source="calibrated")
            (out / p.name / "llc.json").write_text(json.dumps(
                {"format": "beliefgeo-llc/1", "settings": settings}))
            (out / p.name / POINT_FILE).write_text("{}")
        return {p.name: {"status": "failed" if p.name == "seed=0" else "done"} for p in todo}

    monkeypatch.setattr(sweep, "_drive", drive)
    results = sweep._drive_sharing_llc(None, points, points, plans, tmp_path, 3, "t", 0)
    assert [c[:4] for c in calls] == [(["seed=0"], 1, 0, 4), (["seed=1"], 1, 1, 4),
                                      (["seed=2", "seed=3"], 3, 2, 4)]  # fmt: skip
    assert [c[4] for c in calls] == [[False], [False], [True, True]]
    measured = [json.loads((tmp_path / s / "llc.json").read_text())["settings"]
                for s in ("seed=1", "seed=2", "seed=3")]  # fmt: skip
    assert {m["lr"] for m in measured} == {4.2e-4}
    assert results["seed=0"]["status"] == "failed" and len(results) == 4


# ---- on Ray -------------------------------------------------------------------------------------
def _file_times(out: Path) -> dict:
    """Modification times of every checkpoint and finished-point marker under `out`."""
    files = [*out.glob("*/checkpoints/*.pt"), *out.glob(f"*/{POINT_FILE}")]
    return {str(f.relative_to(out)): f.stat().st_mtime_ns for f in files}


def _env() -> dict:
    here = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "BELIEFGEO_THREADS": "1",
            "PYTHONPATH": here if not path else f"{here}{os.pathsep}{path}"}  # fmt: skip


@pytest.mark.slow  # Ray in a subprocess driver, SIGKILLed and rerun: minutes
def test_sigkilled_driver_resumes_without_training_a_point_twice(tmp_path):
    spec = _spec(tmp_path, {"seed": [0, 1]})
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "experiments.cli", "sweep", str(spec), "--out", str(out)]
    argv += ["--max-parallel", "1"]
    driver = subprocess.Popen(argv, env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(out.glob(f"*/{POINT_FILE}")) and time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = _file_times(out)
    finished = sorted(p.parent.name for p in out.glob(f"*/{POINT_FILE}"))
    assert finished == ["seed=0"]
    rerun = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    after = _file_times(out)
    assert {k: after[k] for k in before} == before  # nothing written before the kill is redone
    assert sorted(p.parent.name for p in out.glob(f"*/{POINT_FILE}")) == ["seed=0", "seed=1"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_done"] == 2 and summary["rows"][0]["n_seeds"] == 2


@pytest.fixture
def ray_cluster():
    """A Ray head started separately (`ray start --head --block`), stopped by its own process."""
    port = _free_port()
    ray = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
        ],  # fmt: skip
        env={**_env(), "RAY_AUTH_MODE": "disabled"},  # no token to hand to the driver
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert head.poll() is None, "ray start failed"
            time.sleep(0.5)
    yield f"127.0.0.1:{port}"
    head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started on SIGTERM
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)


@pytest.mark.slow  # a Ray head in a subprocess and a sweep on it: about a minute
def test_address_cluster_failing_point_and_summary(tmp_path, ray_cluster, capsys):
    axes = {"lr+seed": [[0.01, 0], [0.01, 1], [DIVERGES, 0]], "act_fn": ["relu"]}
    spec = _spec(tmp_path, axes)
    out = tmp_path / "sweep"
    argv = ["sweep", str(spec), "--out", str(out), "--address", ray_cluster]
    assert main([*argv, "--max-parallel", "2"]) == 1
    err = capsys.readouterr().err
    assert f"1 of 3 points failed: see {out / 'summary.json'}" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [f["name"] for f in summary["failed"]] == ["lr=1e+30,seed=0,act_fn=relu"]
    assert "diverged" in summary["failed"][0]["error"]
    good = ["lr=0.01,seed=0,act_fn=relu", "lr=0.01,seed=1,act_fn=relu"]
    assert all((out / name / POINT_FILE).is_file() for name in good)
    assert all((out / name / "report.html").is_file() for name in good)
    row = next(r for r in summary["rows"] if r["setting"] == "lr=0.01,act_fn=relu")
    _check_row_against_run_folders(row, [out / name for name in good])
    assert "lr=0.01,act_fn=relu" in (out / "summary.csv").read_text()
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 1


def _check_row_against_run_folders(row: dict, runs: list[Path]) -> None:
    """Recompute the headline numbers from the runs' own files and their 95 % t-interval."""
    excess, r2, next_token, beyond = [], [], [], []
    for run in runs:
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        excess.append([m for m in lines if m.get("exact_excess_loss") is not None][-1]
                      ["exact_excess_loss"])  # fmt: skip
        probes = json.loads((run / "probes.json").read_text())
        final = probes["checkpoints"][-1]
        r2.append(final["layers"]["blocks.0.hook_hidden"]["r2_heldout"])
        next_token.append(final["next_token"]["r2_heldout"])
        beyond.append(final["layers"]["blocks.0.hook_hidden"]["r2_beyond_prediction"])
    for name, values in (("final_exact_excess_loss", excess), ("final_r2_heldout", r2),
                         ("final_next_token_r2", next_token),
                         ("final_r2_beyond_prediction", beyond)):
        mean = sum(values) / 2
        sd = abs(values[0] - values[1]) / math.sqrt(2)
        assert row[f"{name}_mean"] == pytest.approx(mean, rel=1e-12)
        assert row[f"{name}_sd"] == pytest.approx(sd, rel=1e-9)
        half = T_975_1 * sd / math.sqrt(2)
        assert row[f"{name}_ci95_low"] == pytest.approx(mean - half, rel=1e-9, abs=1e-15)
        assert row[f"{name}_ci95_high"] == pytest.approx(mean + half, rel=1e-9, abs=1e-15)
    assert row["n_seeds"] == 2 and np.isfinite(row["final_r2_heldout_mean"])


@pytest.mark.slow
def test_reproduce_with_seeds_trains_each_seed_and_summarises(tmp_path, capsys):
    out = tmp_path / "mess3"
    argv = ["reproduce", "mess3", "--seeds", "2", "--tokens", "3000", "--out", str(out)]
    argv += ["--n-layers", "1", "--d-model", "16", "--d-mlp", "32"]
    assert main(argv) == 0
    assert sorted(p.parent.name for p in out.glob(f"*/{POINT_FILE}")) == ["seed=0", "seed=1"]
    configs = [json.loads((out / s / "config.json").read_text()) for s in ("seed=0", "seed=1")]
    assert [c["train"]["seed"] for c in configs] == [0, 1]
    assert all(c["model"]["d_model"] == 16 and c["model"]["n_layers"] == 1 for c in configs)
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    assert row["n_seeds"] == 2 and row["final_r2_heldout_ci95_low"] is not None
    assert "data:image/png;base64," in (out / "report.html").read_text()


@pytest.mark.slow  # two tiny seeds on Ray, each with probes, phases and the LLC: a CPU minute
def test_seeds_with_llc_calibrate_once_and_band_the_curves(tmp_path):
    from experiments.pipeline import Study, with_settings
    from experiments.sweep import run_seeds
    from probes.llc_settings import CalibrationGrid, LLCPlan, LLCSettings

    grid = CalibrationGrid(lrs=(1e-3,), localizations=(300.0,), n_betas=(15.0,), chains=2)
    llc = LLCPlan(checkpoints=2, settings=LLCSettings(chains=2, draws=16), grid=grid)
    plan = with_settings(Study(process="mess3", why="tiny", llc=llc), TINY)
    out = run_seeds(plan, tmp_path / "seeds", [0, 1], title="seeds")
    first, second = (json.loads((out / s / "llc.json").read_text()) for s in ("seed=0", "seed=1"))
    assert first["calibration"] is not None and len(first["calibration"]["grid"]) == 1
    assert second["calibration"] is None and second["settings"]["source"] == "given"
    keys = ("lr", "n_beta", "localization", "chains", "draws")
    assert [first["settings"][k] for k in keys] == [second["settings"][k] for k in keys]
    compared = json.loads((out / "llc_compare.json").read_text())
    assert compared["groups"]["base"]["runs"] == [str(out / "seed=0"), str(out / "seed=1")]
    page = (out / "report.html").read_text()
    assert "Local learning coefficient across runs" in page and "base (2 runs)" in page
    (row,) = json.loads((out / "summary.json").read_text())["rows"]
    assert "final_llc_mean" in row


def test_the_recurrent_cells_example_spec_validates_with_null_act_fns():
    from pathlib import Path

    from experiments.sweep import expand, load_spec, point_plans

    spec = Path(__file__).resolve().parents[2] / "experiments/examples/sweep_recurrent_cells.json"
    points = expand(load_spec(spec))
    assert [p.name for p in points[::3]] == [
        "arch=rnn,act_fn=tanh,seed=0", "arch=lstm,seed=0", "arch=gru,seed=0"
    ]  # fmt: skip
    plans = point_plans(points)
    assert {plans[p.name].arch for p in points} == {"rnn", "lstm", "gru"}


@pytest.mark.parametrize("name, count, archs", [
    ("sweep_quantum_grid.json", 16, {"transformer", "rnn", "lstm", "gru"}),
    ("sweep_factored.json", 2, {"transformer"}),
    ("sweep_mixture.json", 4, {"transformer", "rnn"}),
    ("sweep_constant_lr.json", 3, {"transformer"}),
])  # fmt: skip
def test_the_study_specs_parse_and_every_point_resolves(monkeypatch, name, count, archs):
    """The quantum grid, the factored product, the mixture and the constant learning rate
    (docs/sweeps.md): every point dry-resolved (process, recipe, model config), nothing trained."""
    from pathlib import Path

    from experiments.pipeline import resolve_study
    from experiments.sweep import expand, load_spec, point_plans

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # the specs name process files relative to the repository
    points = expand(load_spec(root / "experiments" / "examples" / name))
    plans = point_plans(points)
    assert len(points) == count and {plans[p.name].arch for p in points} == archs
    kinds = {resolve_study(plans[p.name])[0].kind for p in points}
    expected = {"sweep_factored.json": {"product"}, "sweep_mixture.json": {"mixture"},
                "sweep_constant_lr.json": {"hmm"}}  # fmt: skip
    assert kinds == expected.get(name, {"hmm", "ghmm"})


def test_summary_reads_a_composites_targets_per_layer_when_the_probes_wrote_them():
    """probes.json `layers.<hook>.targets.<name>.r2_heldout` (written by the probes of a product
    or mixture) becomes the summary's number; absent -> None (an empty column)."""
    from experiments.summary import _target_r2
    from probes.run_files import LayerScores

    with_targets = LayerScores.from_json({"r2_heldout": 0.5, "targets": {
        "factors": {"r2_heldout": 0.91, "ci95": [0.9, 0.92]}, "belief": {"r2_heldout": 0.5}}})
    assert _target_r2(with_targets, "factors") == 0.91
    assert _target_r2(with_targets, "component") is None
    assert _target_r2(LayerScores.from_json({"r2_heldout": 0.5}), "factors") is None
    assert _target_r2(None, "factors") is None

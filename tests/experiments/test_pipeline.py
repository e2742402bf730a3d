"""The whole pipeline on a tiny budget: train → probe → phases → fractal → report, then the CLI's
contract for the studies' bad input."""

from __future__ import annotations

import csv
import html
import json
import shutil

import pytest

from experiments.cli import main
from experiments.compare import parse_runs
from experiments.pipeline import Study, run_study
from experiments.studies import context_length
from hmm import load_process
from hmm.errors import InvalidInput
from models.architectures import final_layer_hook
from probes.belief_study import CONCAT

TINY_MODEL = {"n_ctx": 6, "n_layers": 2, "d_model": 16, "d_head": 8, "d_mlp": 32}
TINY_TRAIN = {"n_checkpoints": 4, "batch_size": 64, "lr": 1e-2, "warmup_steps": 5}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pipeline") / "run"
    study = Study(process="mess3", model=TINY_MODEL, tokens=40_000, train=TINY_TRAIN, why="tiny")
    run_study(study, run, tokens=None, title="test")
    return run


def test_the_report_leads_with_the_runs_own_numbers(tiny_run):
    """The page opens with the verdict computed from the run's files, then the beliefs-vs-probe
    figure; every number in the verdict is the one the files hold."""
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    page = (tiny_run / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # self-contained, readable offline
    sentences = verdict(summarize_run(tiny_run))
    opening = page.index("<section class='verdict'>")
    assert page.index("<h2>") > opening  # nothing but the title comes before the verdict
    for sentence in sentences:
        assert html.escape(sentence) in page[opening:page.index("</section>")]
    metrics = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    probes = json.loads((tiny_run / "probes.json").read_text())
    assert f"{metrics[-1]['exact_excess_loss']:.5f} nats/token" in sentences[0]
    assert f"held-out R² {probes['headline']['r2_heldout']:.4f}" in sentences[1]
    assert f"scores {probes['headline']['baseline_r2']:.4f}" in sentences[1]
    first_image = page.index("data:image/png;base64,")
    assert opening < first_image < page.index("<h2>")  # the figure right after the verdict


@pytest.mark.parametrize("figure", ["fractal/fractal.png", "figures/phases.png", "figures/loss.png",
                                    "figures/probe_simplex.png", "figures/probe_layers.png"])
def test_figures_are_drawn_images_not_blank_canvases(tiny_run, figure):
    from matplotlib.image import imread

    pixels = imread(tiny_run / figure)  # (height, width, channels) in [0, 1]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()  # share of non-white pixels
    assert 0.01 < ink < 0.9, ink


def test_the_probe_beats_the_untrained_network_and_every_fitted_table(tiny_run):
    """A tiny model after 40 k tokens beats the same network untrained and every table of the last
    k tokens fitted on the fit half. The headline's strongest null is the best of everything it
    compares, the oracle tables (fit on the scored rows) included, which a model this small need
    not beat: the headline names the smallest k whose oracle does."""
    probes = json.loads((tiny_run / "probes.json").read_text())
    final = probes["checkpoints"][-1]["layers"]
    head = probes["headline"]
    r2 = final[head["hook"]]["r2_heldout"]
    tables = head["kgram"]
    assert r2 > head["untrained_r2"] and head["fitted_beats_layer_at"] is None
    compared = [head["next_token_r2"], head["untrained_r2"]] + [
        t[kind] for t in tables.values() for kind in ("oracle", "fitted")]
    assert head["baseline_r2"] == max(v for v in compared if v is not None)
    k = head["oracle_beats_layer_at"]
    if k is not None:
        assert tables[str(k)]["oracle"] > r2
        assert all(tables[str(j)]["oracle"] <= r2 for j in range(1, k))
    untrained = probes["baselines"]["random_init"]
    assert all(v["r2_heldout"] > untrained[h]["r2_mean"] for h, v in final.items()
               if h != "blocks.0.hook_resid_pre")  # the embedding is the same function untrained
    assert all(v["r2_shuffle"] < 0.05 for v in final.values())


@pytest.mark.slow  # probes, phases and the report again: about a CPU minute
def test_rerun_resumes_instead_of_retraining(tiny_run, capsys):
    before = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    study = Study(process="mess3", model=TINY_MODEL, tokens=40_000, train=TINY_TRAIN, why="tiny")
    run_study(study, tiny_run, tokens=None, title="test")
    assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir()) == before
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"wrote {tiny_run / 'report.html'}")


def test_a_study_with_llc_measures_it_after_the_analyses_and_before_the_report(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """The LLC step sits after probes and phases (whose files its emergence and timeline read) and
    before the report, which then carries the LLC section and an LLC sentence in its verdict."""
    from experiments.summary import summarize_run
    from experiments.verdict import verdict
    from probes.llc_settings import llc_plan

    run = shutil.copytree(tiny_run, tmp_path / "run")
    for module, name in (("belief_study", "probe_run"), ("phase_study", "phases_run")):
        monkeypatch.setattr(f"probes.{module}.{name}", lambda *a, **k: None)  # files are there
    monkeypatch.setattr("experiments.pipeline._fractal", lambda *a: None)
    llc = llc_plan({"checkpoints": 2, "lr": 1e-3, "n_beta": 15, "localization": 300,
                    "chains": 2, "draws": 16})  # fmt: skip
    study = Study(process="mess3", model=TINY_MODEL, tokens=40_000, train=TINY_TRAIN, why="tiny",
                  llc=llc)  # fmt: skip
    run_study(study, run, tokens=None, title="test")
    out, err = capsys.readouterr()
    assert err.index("[test] phase diagnostics") < err.index("[test] local learning coefficient")
    assert err.index("[test] local learning coefficient") < err.index("[test] report ...")
    stored = json.loads((run / "llc.json").read_text())
    last = max(int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("*.pt"))
    assert stored["checkpoints"][-1]["tokens"] == last
    assert stored["settings"]["source"] == "given" and stored["emergence"] is not None
    sentences = verdict(summarize_run(run))
    assert verdict(summarize_run(tiny_run)) == sentences[:-1]  # the run without llc.json
    assert sentences[-1].startswith("The local learning coefficient at 2 checkpoints (ε 0.001, "
                                    "γ 300, nβ 15")
    assert sentences[-1] in out  # the study prints its verdict
    page = (run / "report.html").read_text()
    assert html.escape(sentences[-1]) in page[:page.index("</section>")]
    assert "Local learning coefficient: stages of training" in page


def test_report_command_regenerates_from_the_run_alone(tiny_run):
    (tiny_run / "report.html").unlink()
    assert main(["report", str(tiny_run)]) == 0
    assert (tiny_run / "report.html").stat().st_size > 10_000


def test_context_length_is_sized_from_the_process():
    n_ctx, why = context_length(load_process("mess3"))
    assert 8 <= n_ctx <= 10 and "entropy rate" in why
    n_ctx, _ = context_length(load_process("rrxor"))
    assert 2**n_ctx <= 200_000


def test_context_length_gives_the_probes_enough_rows():
    """A 3-state, 2-symbol process synchronises by context 8, where the fit half holds about 255
    distinct prefixes for the 384 features of the default transformer's widest probe; the rule
    lengthens the context until it holds 10 per feature (and a narrow probe keeps 8)."""
    from probes.activations import fit_rows_needed

    process = load_process("random:states=3,symbols=2,seed=1")
    n_ctx, why = context_length(process, probe_features=384)
    prefixes = sum(len(process.enumerate(n)[1]) for n in range(1, n_ctx + 1))
    assert prefixes // 2 >= fit_rows_needed(384) > sum(
        len(process.enumerate(n)[1]) for n in range(1, n_ctx)) // 2
    assert n_ctx == 12 and "distinct prefixes for 384 features" in why
    assert context_length(process, probe_features=8)[0] == 8


def test_rrxor_study_is_the_papers_model_and_the_small_one_stays():
    from experiments.pipeline import resolve_study
    from experiments.studies import STUDIES, reproduce

    _, paper, _ = resolve_study(STUDIES["rrxor"])
    assert (paper.d_model, paper.n_heads, paper.d_head, paper.d_mlp, paper.n_layers) == (
        128, 4, 16, 512, 4)
    _, small, _ = resolve_study(STUDIES["rrxor-small"])
    assert (small.d_model, small.n_heads, small.d_head, small.d_mlp) == (64, 1, 8, 256)
    with pytest.raises(InvalidInput, match="unknown study"):
        reproduce("rrxor-huge")


def test_probe_hmm_refuses_a_bad_context(tmp_path):
    from experiments.studies import probe_hmm

    spec = tmp_path / "p.json"
    spec.write_text(json.dumps(load_process("golden_mean").to_spec()))
    with pytest.raises(InvalidInput, match="--n-ctx"):
        probe_hmm(spec, out=tmp_path / "run", n_ctx=1)
    assert not (tmp_path / "run").exists()


def test_parse_runs_validates_pairs():
    assert parse_runs("transformer:relu, rnn:tanh") == [("transformer", "relu"), ("rnn", "tanh")]
    for bad in ("transformer:tanh", "cnn:relu", "", "rnn:tanh,rnn:tanh", "rnn", "lstm,lstm"):
        with pytest.raises(InvalidInput):
            parse_runs(bad)
    assert parse_runs("rnn:tanh,lstm,gru") == [("rnn", "tanh"), ("lstm", None), ("gru", None)]


@pytest.mark.parametrize(
    ("base", "axes", "refused"),
    [({"arch": "lstm", "act_fn": "tanh"}, {"seed": [0]}, "seed=0"),
     ({}, {"arch+act_fn": [["rnn", "tanh"], ["gru", "relu"]]}, "act_fn=relu"),
     ({"act_fn": "sigmoid"}, {"arch": ["rnn", "lstm"]}, "arch=lstm")],
)  # fmt: skip
def test_an_act_fn_for_a_gated_cell_is_refused_by_every_sweep_entry(base, axes, refused):
    from experiments.sweep import expand, point_plans

    points = expand({"base": {"process": "mess3", **base}, "axes": axes})
    with pytest.raises(InvalidInput, match=rf"^point [^\n]*{refused}[^\n]*: --act-fn \w+ does "
                       r"not apply to --arch (lstm|gru): [^\n]+$"):  # fmt: skip
        point_plans(points)


def test_compare_runs_put_gated_cells_beside_the_elman_rnn_without_an_act_fn():
    from experiments.sweep import expand, point_plans

    axes = {"arch+act_fn": [list(p) for p in parse_runs("rnn:tanh,lstm,gru")], "seed": [0]}
    points = expand({"base": {"process": "mess3"}, "axes": axes})
    assert [p.name for p in points] == ["arch=rnn,act_fn=tanh,seed=0", "arch=lstm,seed=0",
                                        "arch=gru,seed=0"]  # fmt: skip
    assert [p.setting for p in points] == ["arch=rnn,act_fn=tanh", "arch=lstm", "arch=gru"]
    assert set(point_plans(points)) == {p.name for p in points}
    with pytest.raises(InvalidInput, match="does not apply to --arch lstm"):
        point_plans(expand({"base": {"process": "mess3"},
                            "axes": {"arch+act_fn": [list(p) for p in parse_runs("lstm:tanh")]}}))


@pytest.mark.parametrize(
    "argv",
    [
        ["probe-hmm", "no-such-spec.json"],
        ["compare-phases", "mess3", "--runs", "transformer:sigmoid", "--out", "{tmp}/cmp"],
        ["compare-phases", "nonsense", "--out", "{tmp}/cmp"],
        ["compare-phases", "mess3", "--recipes", "default,nope", "--out", "{tmp}/cmp"],
        ["compare-phases", "mess3", "--recipes", "memorize,memorize", "--out", "{tmp}/cmp"],
        ["report", "{tmp}"],
        ["reproduce", "mess4"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_invalid_spec_file_gives_the_validation_message(tmp_path, capsys):
    spec = tmp_path / "bad.json"
    spec.write_text(
        json.dumps(
            {
                "name": "bad",
                "states": ["A"],
                "symbols": ["0", "1"],
                "transitions": {"0": [[0.5]], "1": [[0.4]]},
                "initial": None,
            }
        )
    )
    assert main(["probe-hmm", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "sums to" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _exit_code(argv) -> int:
    """main()'s return code, or argparse's exit code for a malformed command line."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.slow  # a Ray sweep of two runs with the LLC: about 2 CPU minutes
def test_compare_phases_writes_table_figure_and_report(tmp_path):
    out = tmp_path / "cmp"
    settings = tmp_path / "llc.json"  # small SGLD settings for every run, no calibration
    settings.write_text(json.dumps({"format": "beliefgeo-llc/1", "settings": {
        "lr": 1e-3, "n_beta": 15.0, "localization": 300.0, "chains": 2, "draws": 16}}))
    argv = ["compare-phases", "even", "--runs", "transformer:relu,rnn:sigmoid", "--tokens", "3000"]
    argv += ["--llc", "--llc-checkpoints", "2", "--llc-settings-from", str(settings)]
    assert main([*argv, "--seeds", "1", "--out", str(out)]) == 0
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["run"] for r in rows] == ["transformer-relu", "rnn-sigmoid"]
    for row in rows:
        assert row["final_phase"] and row["n_seeds"] == "1"
        run = out / f"arch={row['arch']},act_fn={row['act_fn']},seed=0"
        layers = json.loads((run / "probes.json").read_text())["checkpoints"][-1]["layers"]
        final = final_layer_hook([h for h in layers if h != CONCAT])
        assert float(row["final_r2"]) == pytest.approx(layers[final]["r2_heldout"], abs=1e-4)
        assert float(row["final_r2_heldout_mean"]) == pytest.approx(layers[final]["r2_heldout"])
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "arch=rnn,act_fn=sigmoid,seed=0/report.html" in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_done"] == 2 and not summary["failed"]
    compared = json.loads((out / "llc_compare.json").read_text())  # LLC per architecture
    assert list(compared["groups"]) == ["transformer-relu", "rnn-sigmoid"]
    assert compared["settings"]["draws"] == 16
    page = (out / "report.html").read_text()
    assert "Local learning coefficient across runs" in page and "rnn-sigmoid (1 run)" in page

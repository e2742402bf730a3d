"""`beliefgeo llc RUN` through the command line on the shared tiny run (a 2-layer RNN with
probes.json and phases.json): its files, its closing line, and bad input in one line; and the
studies' --llc options (reproduce, probe-hmm, compare-phases): bad values in one line, at once."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--lr", "1e-3", "--n-beta", "15", "--localization", "300", "--chains", "2",
         "--draws", "16"]  # fmt: skip


@pytest.fixture(scope="module")
def llc_of_tiny_run(tiny_run, cli, tmp_path_factory):
    run = tmp_path_factory.mktemp("llc") / "run"
    shutil.copytree(tiny_run["run"], run)  # the shared run stays as the other tests expect
    return run, cli(["llc", str(run), *QUICK, "--checkpoints", "3"])


def test_llc_writes_llc_json_the_timeline_and_one_closing_line(llc_of_tiny_run):
    run, (code, out, err) = llc_of_tiny_run
    assert code == 0, err
    assert out.startswith(f"wrote {run / 'llc.json'}: LLC at 3 checkpoints (ε 0.001, γ 300, ")
    assert len(out.strip().splitlines()) == 1
    stored = json.loads((run / "llc.json").read_text())
    assert stored["calibration"] is None and stored["settings"]["source"] == "given"
    assert stored["emergence"]["hook"] == "blocks.1.hook_hidden"  # the RNN's final layer
    assert (run / "figures" / "llc_timeline.png").stat().st_size > 10_000
    spec = importlib.util.spec_from_file_location("llc_tests", ROOT / "tests/probes/test_llc.py")
    tests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tests)
    tests.documented_keys_check(run, "rnn")


def test_settings_from_measures_another_run_the_same_way(llc_of_tiny_run, cli, tmp_path):
    run, _ = llc_of_tiny_run
    other = tmp_path / "other"
    shutil.copytree(run, other)
    (other / "llc.json").unlink()
    code, _, err = cli(["llc", str(other), "--settings-from", str(run / "llc.json"),
                        "--checkpoints", "1"])  # fmt: skip
    assert code == 0, err
    first, second = (json.loads((r / "llc.json").read_text())["settings"] for r in (run, other))
    assert first == second


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "not a run"),
        (["--lr", "1e-3"], "give --lr, --n-beta and --localization together"),
        (["--lr", "-1", "--n-beta", "15", "--localization", "300"], "lr > 0"),
        (["--lr", "1e-3", "--n-beta", "15", "--localization", "nan"], "must be finite"),
        (["--draws", "3"], "draws must be an integer >= 8"),
        (["--chains", "1"], "chain spread needs two"),
        (["--checkpoints", "0"], "--checkpoints"),
        (["--checkpoints", "some"], "--checkpoints"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, tiny_run, tmp_path, args, message):
    target = tmp_path if message == "not a run" else tiny_run["run"]
    code, out, err = cli(["llc", str(target), *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tiny_run["run"] / "llc.json").exists()  # nothing written


def test_bad_input_is_answered_before_torch_is_imported(tmp_path):
    script = (
        "import sys\n"
        "from experiments.cli import main\n"
        f"runs = [['llc', {str(tmp_path)!r}], ['llc', 'nowhere', '--lr', '1']]\n"
        "assert [main(argv) for argv in runs] == [2, 2]\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


EXAMPLE = ROOT / "experiments" / "examples" / "noisy_4_cycle.json"
STUDIES = {"reproduce": ["reproduce", "mess3"], "probe-hmm": ["probe-hmm", str(EXAMPLE)],
           "compare-phases": ["compare-phases", "mess3", "--out", "cmp"]}  # fmt: skip


@pytest.mark.parametrize("study", list(STUDIES))
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llc-checkpoints", "5"], "--llc-checkpoints needs --llc (the LLC is off by default)"),
        (["--llc-settings-from", "x.json"], "--llc-settings-from needs --llc"),
        (["--llc", "--llc-checkpoints", "0"], "--llc-checkpoints: must be at least 1"),
        (["--llc", "--llc-checkpoints", "some"], "--llc-checkpoints: 'some' is not an integer"),
        (["--llc", "--llc-settings-from", "missing.json"], "missing.json does not exist"),
        (["--llc", "--llc-settings-from", "config.json"], "is not a beliefgeo llc.json"),
        (["--llc=yes"], "--llc: ignored explicit argument"),
    ],
)
def test_study_llc_options_refuse_bad_values_in_one_line(cli, tmp_path, monkeypatch, study, args,
                                                         message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "beliefgeo-run/2"}')
    code, _, err = cli([*STUDIES[study], *args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]  # nothing written


def test_study_llc_options_are_checked_before_torch_is_imported(tmp_path):
    script = (
        "import sys\n"
        "from experiments.cli import main\n"
        "runs = [['reproduce', 'mess3', '--llc', '--llc-settings-from', 'missing.json'],\n"
        "        ['compare-phases', 'mess3', '--out', 'x', '--llc-checkpoints', '3']]\n"
        "assert [main(argv) for argv in runs] == [2, 2]\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_llc_plans_from_flags_and_spec_keys_follow_one_rule(llc_of_tiny_run):
    from probes.llc_settings import LLCSettings, llc_plan

    run, _ = llc_of_tiny_run
    calibrated = llc_plan(True)
    assert calibrated.checkpoints == 10 and calibrated.grid is not None
    assert calibrated.settings == LLCSettings()
    like = llc_plan({"settings_from": str(run / "llc.json"), "checkpoints": "all", "draws": 32})
    assert like.grid is None and like.checkpoints is None
    assert (like.settings.lr, like.settings.chains, like.settings.draws) == (1e-3, 2, 32)
    assert calibrated.like(run / "llc.json").settings.draws == 16  # the file's, as measured
    assert llc_plan(False) is None and llc_plan(None) is None

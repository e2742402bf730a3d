"""`beliefgeo llc RUN` through the command line on the shared tiny run (a 2-layer RNN with
probes.json and phases.json): its files, its closing line, and bad input in one line."""

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

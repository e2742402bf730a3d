"""benchmarks.readme_results: README blocks rewritten from real run files (the tiny run of
conftest.py), mean and interval over seeds with a known answer, and a second rewrite changing
nothing."""

from __future__ import annotations

import json
import shutil

from benchmarks.readme_results import main
from experiments.compare import CSV_FIELDS
from experiments.summary import summarize_run

README = """# title
<!-- results: demo -->
hand-typed 0.123
<!-- /results -->
between blocks
<!-- results: seeds -->
<!-- /results -->
<!-- results: compare -->
<!-- /results -->
<!-- results: noisy4 -->
left alone: its folder does not exist
<!-- /results -->
"""


def _seeds_folder(run, folder) -> float:
    """Two copies of `run`, the second's final-layer R² raised by 0.1; returns the first's."""
    summary = summarize_run(run)
    for name in ("seed=0", "seed=1"):
        shutil.copytree(run, folder / name, ignore=shutil.ignore_patterns("checkpoints"))
    path = folder / "seed=1" / "probes.json"
    probes = json.loads(path.read_text())
    probes["checkpoints"][-1]["layers"][summary.probes.hook]["r2_heldout"] += 0.1
    path.write_text(json.dumps(probes))
    (folder / "summary.json").write_text(json.dumps({"rows": [{"runs": ["seed=0", "seed=1"]}]}))
    return summary.probes.r2


def test_blocks_are_rewritten_from_the_run_files_and_a_second_rewrite_changes_nothing(
    tiny_run, tmp_path
):
    run = tiny_run["run"]
    first_r2 = _seeds_folder(run, tmp_path / "seeds")
    (tmp_path / "compare").mkdir()
    (tmp_path / "compare" / "summary.csv").write_text(
        ",".join(CSV_FIELDS) + "\nrnn-tanh,rnn,tanh,3,0.0001,0.9988,1000,,tanh hybrid (3/3)\n"
    )
    blocks = {"demo": {"path": str(run), "command": "beliefgeo train tiny"},
              "seeds": {"path": str(tmp_path / "seeds")},
              "compare": {"path": str(tmp_path / "compare")},
              "noisy4": {"path": str(tmp_path / "absent")}}  # fmt: skip
    (tmp_path / "map.json").write_text(json.dumps(blocks))
    readme = tmp_path / "README.md"
    readme.write_text(README)
    argv = ["--readme", str(readme), "--map", str(tmp_path / "map.json")]
    assert main(argv) == 0
    text = readme.read_text()
    summary = summarize_run(run)
    assert "hand-typed" not in text and "between blocks" in text and "left alone" in text
    assert "(`beliefgeo train tiny`)" in text
    assert f"| final-layer held-out R² | {summary.probes.r2:.4f} |" in text
    assert f"excess loss (nats/token) exact, over every input | {summary.loss.excess:.5f} |" in text
    mean = first_r2 + 0.05  # sd 0.1/√2 over two seeds: half-width t(0.975, 1) · 0.05
    half = 12.706204736174698 * 0.05
    assert f"| final-layer held-out R² | {mean:.4f} [{mean - half:.4f}, {mean + half:.4f}] " \
           "(n = 2) |" in text  # fmt: skip
    assert "| rnn-tanh | rnn | tanh | 3 | 0.0001 | 0.9988 | 1000 |  | tanh hybrid (3/3) |" in text
    assert main(argv) == 0
    assert readme.read_text() == text


def test_an_unknown_block_or_argument_exits_2(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results: nosuch -->\n<!-- /results -->\n")
    assert main(["--readme", str(readme)]) == 2
    assert main(["--readme", str(readme), "demo"]) == 2
    assert capsys.readouterr().err.count("error: ") == 2


def test_a_sweep_block_lists_each_setting_beside_its_nulls_and_its_cpu_seconds(tmp_path):
    folder = tmp_path / "grid"
    row = {"setting": "process=moon", "n_seeds": 2, "runs": ["a", "b"],
           "final_r2_heldout_mean": 0.8, "final_r2_heldout_ci95_low": 0.7,
           "final_r2_heldout_ci95_high": 0.9, "best_kgram_oracle_r2_mean": 0.6,
           "final_r2_factors_mean": 0.5}  # fmt: skip
    for run, cpu in (("a", 10.0), ("b", 30.0)):
        (folder / run).mkdir(parents=True)
        (folder / run / "point.json").write_text(json.dumps({"cpu_s": cpu}))
    (folder / "summary.json").write_text(json.dumps({"rows": [row]}))
    blocks = {"grid": {"kind": "sweep", "path": str(folder), "command": "beliefgeo sweep x"}}
    (tmp_path / "map.json").write_text(json.dumps(blocks))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results: grid -->\n<!-- /results -->\n")
    assert main(["--readme", str(readme), "--map", str(tmp_path / "map.json")]) == 0
    line = next(x for x in readme.read_text().splitlines() if x.startswith("| process=moon"))
    assert line == "| process=moon | 2 | 0.8000 [0.7000, 0.9000] | — | — | 0.6000 | — | — | 20 |"

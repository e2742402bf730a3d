"""CKA in summaries: runs grouped by process, identical runs score 1 against each other, the
settings table pools seed pairs, and the report section names its null."""

from __future__ import annotations

import json
import shutil

import pytest

from experiments.cka_summary import setting_table, setting_table_html, sweep_cka


@pytest.fixture(scope="module")
def folder(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    for name in ("s=a,seed=0", "s=a,seed=1", "s=b,seed=0"):
        shutil.copytree(tiny_run["run"], out / name)
    other = out / "other"  # the same run relabelled as another process: not compared
    shutil.copytree(tiny_run["run"], other)
    config = json.loads((other / "config.json").read_text())
    config["process"]["name"] = "renamed"
    (other / "config.json").write_text(json.dumps(config))
    return out


def test_runs_are_compared_within_a_process(folder):
    entries = sweep_cka(folder, ["s=a,seed=0", "s=a,seed=1", "s=b,seed=0", "other"])
    assert len(entries) == 1  # "other" is alone in its group
    entry = entries[0]
    assert set(entry["runs"]) == {"s=a,seed=0", "s=a,seed=1", "s=b,seed=0"}
    assert len(entry["pairs"]) == 3
    for pair in entry["pairs"]:  # copies of one run: the same activations
        for hook, row in pair["cka"].items():
            assert row[hook] == pytest.approx(1.0, abs=1e-6)


def test_setting_table_pools_the_pairs_of_two_settings(folder):
    entries = sweep_cka(folder, ["s=a,seed=0", "s=a,seed=1", "s=b,seed=0"])
    rows = [{"setting": "s=a", "runs": ["s=a,seed=0", "s=a,seed=1"]},
            {"setting": "s=b", "runs": ["s=b,seed=0"]}]
    table = {(r["a"], r["b"]): r for r in setting_table(entries, rows)}
    assert table[("s=a", "s=a")]["n_pairs"] == 1 and table[("s=a", "s=b")]["n_pairs"] == 2
    assert table[("s=a", "s=b")]["cka_mean"] == pytest.approx(1.0, abs=1e-6)
    section = setting_table_html(entries, rows)
    assert "untrained" in section and "s=b" in section
    assert setting_table_html([], rows) == ""

"""The report's geometry section: drawn from the files a run has, each part only when present."""

from __future__ import annotations

import shutil

from experiments.geometry_report import geometry_section
from experiments.report import write_report
from probes.interventions import intervene_run


def test_report_shows_dimensions_and_interventions(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run["run"], tmp_path / "run")
    assert not any("interventions" in part for part in geometry_section(run, None))
    intervene_run(run, n_prefixes=20, n_boot=20)
    page = write_report(run).read_text()
    assert "How many dimensions does each layer spend?" in page
    assert "exact-counterfactual interventions" in page
    assert "moving the belief along the probe direction at block 1 hidden" in page

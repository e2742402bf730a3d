"""The typed readers of run files: llc.json read through LlcFile, also when written by an older or
partial version (keys missing, keys this version does not know)."""

from __future__ import annotations

import json

import pytest

from hmm.errors import InvalidInput
from probes.run_files import LlcFile, read_llc


def _partial() -> dict:
    """llc.json as an interrupted or older writer may leave it: no calibration key, no stages,
    emergence or figures, a checkpoint without trace or flags, and a key this version lacks."""
    return {
        "format": "beliefgeo-llc/1",
        "settings": {"lr": 0.001, "n_beta": 15.0, "localization": 300.0, "chains": 2},
        "checkpoints": [{"tokens": 1280, "llc_mean": 0.4, "llc_sd": 0.1},
                        {"tokens": 2560, "llc_mean": None}],
        "written_by": "a newer beliefgeo",
    }  # fmt: skip


def test_a_partial_llc_json_reads_with_defaults_and_keeps_unknown_keys(tmp_path):
    (tmp_path / "llc.json").write_text(json.dumps(_partial()))
    llc = read_llc(tmp_path)  # the run folder ...
    assert llc == read_llc(tmp_path / "llc.json")  # ... or the file itself
    assert isinstance(llc, LlcFile) and llc.settings.n_beta == 15.0
    assert llc.settings.source is None and llc.calibration is None and llc.emergence is None
    assert llc.stages is None and llc.figures is None
    first, second = llc.checkpoints
    assert (first.tokens, first.llc_mean, first.flags, first.trace) == (1280, 0.4, [], None)
    assert second.llc_mean is None
    assert llc.undeclared == {"written_by": "a newer beliefgeo"}
    assert llc.to_json() == _partial()  # read and written back unchanged


def test_the_summary_and_closing_line_of_a_partial_llc_json(tmp_path):
    from experiments.closing import llc_part
    from experiments.summary import LlcSummary

    (tmp_path / "llc.json").write_text(json.dumps(_partial()))
    summary = LlcSummary(read_llc(tmp_path))
    assert summary.structure is None and summary.boundaries == []
    assert summary.final_llc is None and summary.emergence_place() is None
    assert [e.tokens for e in summary.usable] == [1280]
    assert llc_part(summary) == ("LLC at 2 checkpoints (ε 0.001, γ 300, nβ 15, source unknown); "
                                 "too few unflagged estimates for stages")


def test_no_llc_json_is_none_and_another_json_is_refused(tmp_path):
    assert read_llc(tmp_path) is None
    (tmp_path / "llc.json").write_text(json.dumps({"format": "beliefgeo-run/2"}))
    with pytest.raises(InvalidInput, match="is not a beliefgeo llc.json"):
        read_llc(tmp_path)


def test_a_writer_cannot_write_a_key_its_type_does_not_declare(tmp_path):
    """write_record refuses undeclared keys at any depth (top level, in a list of records, under a
    run-dependent name) and writes nothing; a declared file is written as given."""
    from hmm.records import UndeclaredKeys, undeclared_keys, write_record
    from models.run_files import MetricsLine, RunConfig
    from probes.run_files import PhasesFile, ProbesFile

    path = tmp_path / "llc.json"
    with pytest.raises(UndeclaredKeys, match="keys not declared in LlcFile: written_by"):
        write_record(path, LlcFile, _partial())
    assert not path.exists()
    declared = {k: v for k, v in _partial().items() if k != "written_by"}
    write_record(path, LlcFile, declared)
    assert json.loads(path.read_text()) == declared
    nested = {"checkpoints": [{"tokens": 0, "layers": {"layer_0": {"r2_heldout": 0.5, "r3": 1}}}],
              "headline": {"r2": 0.1}}  # fmt: skip
    assert undeclared_keys(ProbesFile, nested) == ["checkpoints[].layers.layer_0.r3",
                                                   "headline.r2"]
    assert undeclared_keys(PhasesFile, {"checkpoints": [{"tokens": 0, "lr_typo": 1}]}) == [
        "checkpoints[].lr_typo"]
    assert undeclared_keys(RunConfig, {"model": {"d_vocab": 2, "hiden": 8}}) == ["model.hiden"]
    assert undeclared_keys(MetricsLine, {"step": 1, "loss": 0.5}) == []

import json
import math
import os

import numpy as np
import pytest
import torch

from hmm import files
from hmm.errors import InvalidInput


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    assert files.write_atomic(target, "first") == target
    files.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert _leftovers(target.parent) == []


def test_a_failing_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    files.write_atomic(target, "old contents")

    def interrupted(src, dst):
        assert os.path.exists(src)  # the new data was written to a temporary in the same folder
        raise KeyboardInterrupt  # a Ctrl-C between writing and renaming

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomic(target, "new contents")
    assert target.read_text() == "old contents"
    assert _leftovers(tmp_path) == []


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "run.json"
    files.write_atomic(target, "old contents")
    with pytest.raises(TypeError):
        files.write_atomic(target, 12345)  # not bytes or str: fails inside the write
    assert target.read_text() == "old contents"
    assert _leftovers(tmp_path) == []


def test_json_safe_turns_non_finite_numbers_into_null_and_arrays_into_lists():
    obj = {
        1: float("nan"),
        "inf": [float("inf"), -float("inf"), 0.5],
        "array": np.array([[1.0, np.nan], [2.0, 3.0]]),
        "tensor": torch.tensor([1.5, float("inf")]),
        "scalar": np.float64(2.25),
        "tuple": (1, "a", None, True),
    }
    assert files.json_safe(obj) == {
        "1": None,
        "inf": [None, None, 0.5],
        "array": [[1.0, None], [2.0, 3.0]],
        "tensor": [1.5, None],
        "scalar": 2.25,
        "tuple": [1, "a", None, True],
    }


def test_write_json_is_strict_json_and_reads_back(tmp_path):
    path = files.write_json(tmp_path / "a.json", {"loss": math.nan, "r2": [0.25, math.inf]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == files.read_json(path) == {"loss": None, "r2": [0.25, None]}


def test_read_json_turns_missing_and_malformed_files_into_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        files.read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"half": ')
    with pytest.raises(InvalidInput, match="is not valid JSON"):
        files.read_json(tmp_path / "bad.json")


def test_writable_dir_refuses_a_file_in_the_way(tmp_path):
    assert files.writable_dir(tmp_path / "new" / "dir").is_dir()
    (tmp_path / "taken").write_text("x")
    with pytest.raises(InvalidInput, match="is not a directory"):
        files.writable_dir(tmp_path / "taken")
    assert list((tmp_path / "new" / "dir").iterdir()) == []  # its write test left nothing behind

"""The repository documents itself: nothing points outside it, and the key lists of
docs/run-files.md are exactly the keys a real run writes (both directions, so docs cannot drift).

The documented lists are read from the ```keys FILE blocks of docs/run-files.md (notation there);
the written keys come from one tiny run through the CLI (tests/experiments/conftest.py) and a
sweep summary of two copies of it.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = ROOT / "docs" / "run-files.md"
# built from parts so this file does not match itself
OUTSIDE = [".." + "/", "shared/" + "DESIGN", "DESIGN" + ".md", "FINDINGS" + ".md"]


def _repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    return [ROOT / name for name in listed if name and (ROOT / name).is_file()]


def test_no_file_refers_to_a_path_outside_the_repository():
    found = []
    for path in _repository_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue  # binary files (figures, checkpoints)
        for number, line in enumerate(text.splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {word}" for word in OUTSIDE
                      if word in line]
    assert found == []


def test_every_document_the_readme_links_exists():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", readme)
    assert {"docs/processes.md", "docs/recipes.md", "docs/run-files.md"} <= set(links)
    assert [link for link in links if not (ROOT / link).is_file()] == []


# ---- documented keys ---------------------------------------------------------------------------
def documented_keys(name: str) -> list[tuple[str, str]]:
    """(pattern, tag) of every key listed in the ```keys NAME block; braces expanded."""
    blocks = dict(re.findall(r"```keys (\S+)\n(.*?)```", RUN_FILES.read_text(), flags=re.S))
    assert name in blocks, f"docs/run-files.md has no ```keys {name} block"
    keys = []
    for line in blocks[name].splitlines():
        if line.strip():
            pattern, _, tag = line.strip().partition(" ")
            keys += [(p, tag.strip()) for p in _expand(pattern)]
    return keys


def _expand(pattern: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [x for choice in match.group(1).split(",") for x in _expand(head + choice + tail)]


def _regex(pattern: str, names: dict[str, list[str]]) -> re.Pattern:
    parts = re.split(r"(<\w+>)", pattern)
    out = []
    for part in parts:
        if re.fullmatch(r"<\w+>", part):
            assert part in PLACEHOLDERS or part in names, f"undocumented placeholder {part}"
            choices = "|".join(map(re.escape, names.get(part, [])))
            out.append(PLACEHOLDERS.get(part) or f"(?:{choices})")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


PLACEHOLDERS = {"<k>": r"\d+", "<layer>": r"blocks\.\d+(?:\.[a-z_]+)?", "<key>": r".+"}


EMPTY = " (empty object)"


def written_keys(obj, prefix: str = "") -> set[str]:
    """Leaf paths of a JSON value: keys joined by '.', each object of a list under '[]'; an empty
    object is marked, and counts as written for every documented key inside it."""
    if isinstance(obj, dict):
        if not obj:
            return {prefix + EMPTY}
        return set().union(*(written_keys(v, f"{prefix}.{k}" if prefix else k)
                             for k, v in obj.items()))
    if isinstance(obj, list) and any(isinstance(x, dict) for x in obj):
        return set().union(*(written_keys(x, prefix + "[]") for x in obj if isinstance(x, dict)))
    return {prefix}


def compare(name: str, written: set[str], arch: str, names: dict[str, list[str]]) -> None:
    documented = [(p, tag, _regex(p, names), _regex(p.rpartition(".")[0], names))
                  for p, tag in documented_keys(name)]  # fmt: skip
    empty = {w.removesuffix(EMPTY) for w in written if w.endswith(EMPTY)}
    undocumented = sorted(
        w for w in written - {e + EMPTY for e in empty}
        if not any(rx.fullmatch(w) for _, _, rx, _ in documented)
    ) + sorted(e for e in empty if not any(parent.fullmatch(e) for *_, parent in documented))
    applies = [(p, rx, parent) for p, tag, rx, parent in documented
               if not tag or arch in tag.strip("()").split(",")]  # fmt: skip
    stale = [p for p, rx, parent in applies if not any(rx.fullmatch(w) for w in written)
             and not any(parent.fullmatch(e) for e in empty)]
    assert (undocumented, stale) == ([], []), (
        f"{name}: written but not in docs/run-files.md: {undocumented}; documented but not "
        f"written: {stale}"
    )


@pytest.fixture(scope="module")
def tiny_transformer_run(tmp_path_factory, cli):
    """A 1-layer transformer (d_model 8) through train, probe and phases: its own keys."""
    run = tmp_path_factory.mktemp("tiny-transformer") / "run"
    for args in (["train", "golden_mean", "--d-model", "8", "--n-layers", "1", "--d-mlp", "16",
                  "--tokens", "4000", "--out", str(run)], ["probe", str(run)],
                 ["phases", str(run)]):  # fmt: skip
        code, _, err = cli(args)
        assert code == 0, err
    return run


@pytest.fixture(scope="module")
def tiny_lstm_run(tmp_path_factory, cli):
    """A 1-layer LSTM (hidden 4) through train, probe and phases: its own keys."""
    run = tmp_path_factory.mktemp("tiny-lstm") / "run"
    for args in (["train", "golden_mean", "--arch", "lstm", "--hidden", "4",
                  "--tokens", "2000", "--out", str(run)], ["probe", str(run)],
                 ["phases", str(run)]):  # fmt: skip
        code, _, err = cli(args)
        assert code == 0, err
    return run


def _with_names(run: Path) -> tuple[Path, dict, dict]:
    config = json.loads((run / "config.json").read_text())
    probes = json.loads((run / "probes.json").read_text())
    return run, config, {"<hook>": probes["hooks"] + ["concat"],
                         "<symbol>": config["process"]["symbols"]}


@pytest.fixture(scope="module")
def run_names(tiny_run):
    return _with_names(tiny_run["run"])


@pytest.mark.parametrize("name", ["config.json", "probes.json", "phases.json"])
@pytest.mark.parametrize(
    "arch", ["rnn", "transformer", pytest.param("lstm", marks=pytest.mark.slow)]  # ≈ 8 s more
)
def test_documented_keys_are_the_written_keys(request, arch, name):
    fixture = {"rnn": "tiny_run", "transformer": "tiny_transformer_run", "lstm": "tiny_lstm_run"}
    run = request.getfixturevalue(fixture[arch])
    run = run["run"] if arch == "rnn" else run
    run, config, names = _with_names(run)
    assert config["arch"] == arch
    compare(name, written_keys(json.loads((run / name).read_text())), arch, names)


def test_documented_metrics_keys_are_the_written_keys(run_names):
    run, config, names = run_names
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    compare("metrics.jsonl", set().union(*map(written_keys, lines)), config["arch"], names)


def test_documented_fractal_keys_are_the_written_keys(run_names):
    run, config, names = run_names  # the report computed RUN/fractal
    written = written_keys(json.loads((run / "fractal" / "fractal.json").read_text()))
    compare("fractal.json", written, config["arch"], names)


def test_documented_icl_keys_are_the_written_keys(run_names):
    run, config, names = run_names  # the report computed RUN/icl.json
    compare("icl.json", written_keys(json.loads((run / "icl.json").read_text())), config["arch"],
            names)


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_documented_interventions_keys_are_the_written_keys(request, arch, tmp_path):
    from probes.interventions import intervene_run

    source = request.getfixturevalue("tiny_run")["run"] if arch == "rnn" else (
        request.getfixturevalue("tiny_transformer_run"))
    run, config, names = _with_names(shutil.copytree(source, tmp_path / "run"))
    written = written_keys(intervene_run(run, n_prefixes=20, n_boot=20))
    compare("interventions.json", written, arch, names)


def test_documented_summary_columns_are_the_written_columns(run_names, tmp_path):
    from experiments.sweep import expand
    from experiments.sweep_summary import write_summary

    run, config, names = run_names
    points = expand({"base": {}, "axes": {"act_fn": ["tanh"], "seed": [0, 1]}})
    for point in points:
        shutil.copytree(run, tmp_path / point.name)
    write_summary(tmp_path, points, {p.name: {"status": "done"} for p in points}, {})
    with open(tmp_path / "summary.csv", newline="") as handle:
        header = next(csv.reader(handle))
    compare("summary.csv", set(header), config["arch"],
            {**names, "<axis>": ["act_fn"], "<target>": ["belief", "component", "factors"]})


def test_the_python_api_example_runs_as_written(tiny_run, capsys):
    """docs/python-api.md's example, executed on the tiny run: twenty lines at most, its probe
    scores the held-out half, and it prints the headline probes.json holds."""
    text = (ROOT / "docs" / "python-api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 20
    run = tiny_run["run"]
    assert 'Path("runs/mess3-demo")' in code
    code = code.replace('Path("runs/mess3-demo")', f"Path({str(run)!r})")
    capsys.readouterr()
    exec(compile(code, "docs/python-api.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    hook, _, score = lines[0].partition(": held-out R² ")
    assert hook == "blocks.1.hook_hidden" and 0.0 < float(score) <= 1.0
    headline = json.loads((run / "probes.json").read_text())["headline"]
    assert lines[1] == (f"probes.json: {headline['hook']} held-out R² "
                        f"{headline['r2_heldout']:.4f} ({headline['split']} split)")


# ---- the types are the key lists --------------------------------------------------------------
def _types() -> dict:
    from experiments.fractal import FractalFile
    from models.run_files import MetricsLine, RunConfig
    from probes.run_files import IclFile, LlcFile, PhasesFile, ProbesFile

    return {"config.json": RunConfig, "metrics.jsonl": MetricsLine, "probes.json": ProbesFile,
            "phases.json": PhasesFile, "fractal.json": FractalFile,
            "llc.json": LlcFile, "icl.json": IclFile}  # fmt: skip


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "probes.json", "phases.json",
                                  "fractal.json", "llc.json", "icl.json"])  # fmt: skip
def test_documented_keys_are_the_keys_the_types_declare(name):
    """docs/run-files.md lists exactly the keys of the file's record type (hmm.records), with the
    same architecture tags: a new key is one field in the type and one line in the docs. A
    record a file may hold as null or [] (`nullable`) is listed itself too (llc.json's
    `calibration`, `stages.boundaries`)."""
    from hmm.records import record_keys

    documented = {(p, tag) for p, tag in documented_keys(name)}
    declared = {(p, f"({tag})" if tag else "") for key, tag in record_keys(_types()[name])
                for p in _expand(key)}  # fmt: skip
    assert (sorted(declared - documented), sorted(documented - declared)) == ([], [])

"""One tiny run through the real command line, shared by the CLI and documentation tests.

A 2-layer RNN (8 hidden units) trained on the golden-mean process for 4,000 tokens, then probed,
diagnosed and reported, each command through `experiments.cli.main` with stdout and stderr
captured (stderr is not a terminal, so progress comes as plain lines).
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest

from experiments.cli import main

TINY_TRAIN = ["golden_mean", "--arch", "rnn", "--hidden", "8", "--layers", "2",
              "--tokens", "4000"]  # fmt: skip


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `beliefgeo ARGS` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse: --help, --version, malformed flags
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def cli():
    """run_cli, for tests: `code, out, err = cli(["hooks", str(run)])`."""
    return run_cli


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """{"run": RUN, "<command>": (code, stdout, stderr)} for train, probe, phases and report."""
    os.environ.setdefault("BELIEFGEO_THREADS", "1")
    run = tmp_path_factory.mktemp("tiny") / "run"
    result = {"run": run}
    result["train"] = run_cli(["train", *TINY_TRAIN, "--out", str(run)])
    result["probe"] = run_cli(["probe", str(run)])
    result["phases"] = run_cli(["phases", str(run)])
    result["report"] = run_cli(["report", str(run)])
    return result

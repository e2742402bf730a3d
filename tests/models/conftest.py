"""Tiny shapes shared by the models tests: seconds, not minutes, on 2 cores."""

from __future__ import annotations

import pytest
import torch

from hmm import load_process
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.transformer import TransformerConfig


@pytest.fixture(scope="session")
def mess3():
    return load_process("mess3")


@pytest.fixture
def tiny_transformer() -> TransformerConfig:
    return TransformerConfig(n_layers=1, d_model=8, d_head=4, n_heads=2, d_mlp=16, n_ctx=4)


@pytest.fixture
def tiny_rnn() -> RNNConfig:
    return RNNConfig(hidden=8, n_layers=2, n_ctx=4)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(
        tokens=30 * 8 * 4,
        batch_size=8,
        warmup_steps=3,
        n_checkpoints=8,
        log_every=2,
        loss_by_position_every=4,
    )


@pytest.fixture(scope="session")
def resume_is_bit_identical():
    """_resume_is_bit_identical(process, model_config, train_config, folder) for tests."""
    return _resume_is_bit_identical


def _resume_is_bit_identical(process, model_config, train_config, folder, crash_at=13):
    """Train whole, and again interrupted after step `crash_at` then resumed: the final weights
    and every metrics line (but the clocks) must be identical. Returns the whole run."""
    from models.run_files import list_checkpoints, read_metrics
    from models.training import train

    whole = train(process, model_config, train_config, folder / "whole", progress=False)

    def crash(step):
        if step == crash_at:
            raise KeyboardInterrupt

    broken = folder / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(process, model_config, train_config, broken, progress=False, on_step=crash)
    train(process, model_config, train_config, broken, resume=True, progress=False)
    a, b = (torch.load(list_checkpoints(r)[-1][1], weights_only=True) for r in (whole, broken))
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    drop = ("wall_s", "eval_s", "cpu_s")
    strip = [[{k: v for k, v in m.items() if k not in drop} for m in read_metrics(r)]
             for r in (whole, broken)]  # fmt: skip
    assert strip[0] == strip[1]
    return whole

"""Tiny shapes shared by the models tests: seconds, not minutes, on 2 cores."""

from __future__ import annotations

import pytest

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

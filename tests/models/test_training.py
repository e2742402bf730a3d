import json
import math

import numpy as np
import pytest
import torch

from hmm.errors import InvalidInput
from models import load_checkpoint, load_run_process, read_run_config
from models.checkpoints import read_checkpoint, trained_positions
from models.data import data_seed, training_batch
from models.loss import ExactEvaluator, next_token_losses
from models.run_files import list_checkpoints, read_metrics
from models.schedules import checkpoint_steps, lr_multiplier
from models.training import train


@pytest.mark.parametrize("total", [1, 5, 39, 40, 100, 7813, 1_000_000])
def test_checkpoint_schedule(total):
    steps = checkpoint_steps(total, 40)
    assert steps[0] == 0 and steps[-1] == total
    assert steps == sorted(set(steps)) and len(steps) <= 40
    if total >= 1000:
        assert len(steps) >= 30
        early = [s for s in steps if s <= total // 10]
        assert len(early) >= 15  # dense early, where belief geometry emerges
        gaps = np.diff(steps)
        late_gaps = gaps[-10:]
        assert np.ptp(late_gaps) <= 1  # evenly spaced late
        assert gaps[:10].max() < late_gaps.min()


def test_lr_schedule():
    total, warm = 1000, 100
    f = [lr_multiplier(s, "cosine", warm, total) for s in range(total)]
    assert f[0] == pytest.approx(0.01) and f[99] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[100:], f[101:], strict=False))
    assert f[-1] < 1e-4
    assert lr_multiplier(500, "constant", 0, total) == 1.0


def test_data_stream_is_seeded_and_fresh(mess3):
    a = training_batch(mess3, 16, 6, seed=0, step=3)
    assert torch.equal(a, training_batch(mess3, 16, 6, seed=0, step=3))
    assert not torch.equal(a, training_batch(mess3, 16, 6, seed=0, step=4))
    assert data_seed(0, 1) != data_seed(1, 0)
    assert a.shape == (16, 7) and a.dtype == torch.int64  # n_ctx + 1: inputs and targets


def test_every_position_enters_the_training_loss(mess3):
    n_ctx = 5
    tokens = training_batch(mess3, 4, n_ctx, seed=0, step=0)
    logits = torch.randn(4, n_ctx, 3, requires_grad=True)
    losses = next_token_losses(logits, tokens)
    assert losses.shape == (4, n_ctx)
    losses.mean().backward()
    assert (logits.grad.abs().sum(-1) > 0).all()  # every position, every sequence
    # independent formula: -log softmax at each position against the next token
    logq = torch.log_softmax(logits.detach(), -1)
    brute = -logq.gather(-1, tokens[:, 1:, None])[..., 0]
    assert torch.allclose(losses, brute)
    bumped = logits.detach().clone()
    bumped[:, n_ctx - 1] += torch.tensor([5.0, -5.0, 0.0])
    assert next_token_losses(bumped, tokens).mean() != losses.mean()
    # inputs only (legacy callers): the last position has no target
    assert next_token_losses(logits.detach(), tokens[:, :-1]).shape == (4, n_ctx - 1)


class _Oracle(torch.nn.Module):
    """Outputs the exact log predictive distribution: the Bayes-optimal 'model'."""

    def __init__(self, process):
        super().__init__()
        self.process = process
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        beliefs = self.process.beliefs(tokens.numpy())
        return torch.from_numpy(np.log(self.process.predictive(beliefs)))


def test_exact_evaluator_matches_brute_force_and_oracle(mess3, tiny_transformer):
    from models import build_model

    n_ctx = 5
    evaluator = ExactEvaluator(mess3, n_ctx, batch=50)
    assert evaluator(_Oracle(mess3))[1] == pytest.approx(0.0, abs=1e-12)
    tiny_transformer.n_ctx = n_ctx
    model = build_model(tiny_transformer)
    # brute force: every length-(n_ctx+1) sequence, the training loss's positions, weighted by P
    tokens, probs = mess3.enumerate(n_ctx + 1)
    assert len(tokens) == 3 ** (n_ctx + 1)
    tokens = torch.from_numpy(tokens)
    with torch.no_grad():
        losses = next_token_losses(model(tokens[:, :-1]), tokens)
    assert losses.shape == (len(tokens), n_ctx)
    brute = float(probs @ losses.double().mean(1).numpy())
    loss, excess = evaluator(model)
    assert loss == pytest.approx(brute, abs=1e-6)
    # one forward step per distinct prefix (models.prefix_forward): the same sum, grouped
    assert evaluator(model, model=model)[0] == pytest.approx(brute, abs=1e-6)
    assert len(evaluator.tree[0]) == sum(3**t for t in range(1, n_ctx + 1))
    optimum = mess3.optimal_loss(n_ctx + 1)[1:].mean()
    assert excess == pytest.approx(brute - optimum, abs=1e-6)
    # the oracle's brute-force loss over the same positions is the optimum
    with torch.no_grad():
        oracle = next_token_losses(_Oracle(mess3)(tokens[:, :-1]), tokens)
    assert float(probs @ oracle.double().mean(1).numpy()) == pytest.approx(optimum, abs=1e-9)


def test_mess3_optimal_loss_at_paper_context(mess3):
    from models.recipes import TrainConfig
    from models.training import run_config
    from models.transformer import TransformerConfig

    config = run_config(mess3, TransformerConfig(), TrainConfig())
    assert config["optimal_loss"] == pytest.approx(0.80251, abs=5e-6)
    assert len(config["optimal_loss_by_position"]) == 10 == config["data"]["trained_positions"]


def test_train_writes_run(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.exact_eval = "every"
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "run", progress=False)
    config = read_run_config(run)
    assert config["arch"] == "transformer" and config["model"]["d_model"] == 8
    assert config["data"]["total_steps"] == 30
    assert np.array_equal(load_run_process(run).T, mess3.T)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [line["step"] for line in lines]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 30
    for line in lines:
        assert line["tokens"] == line["step"] * 32
        assert line["excess_loss"] == pytest.approx(line["loss"] - line["optimal_loss"])
        assert line["optimal_loss"] == pytest.approx(mess3.optimal_loss(5)[1:].mean())
    with_exact = {line["step"] for line in lines if "exact_excess_loss" in line}
    ckpts = list_checkpoints(run)
    assert with_exact == {t // 32 for t, _ in ckpts} == set(config["checkpoints"]["steps"])
    assert any("loss_by_position" in line and len(line["loss_by_position"]) == 4 for line in lines)
    assert config["format"] == "beliefgeo-run/2" and trained_positions(config) == 4
    assert lines[-1]["exact_excess_loss"] < lines[0]["exact_excess_loss"]
    # a checkpoint is plain tensors: weights_only loading works and rebuilds the model
    state = torch.load(ckpts[-1][1], weights_only=True)
    assert state["tokens"] == 960 and state["data_stream"] == {"seed": 0, "next_step": 30}
    model = load_checkpoint(ckpts[-1][1])
    assert not model.training
    tokens = torch.tensor([[0, 1, 2, 0]])
    logits, cache = model.run_with_cache(tokens)
    assert "blocks.0.hook_resid_post" in cache
    # a resume of a finished run changes nothing
    before = (run / "metrics.jsonl").read_text()
    train(mess3, tiny_transformer, tiny_train, run, resume=True, progress=False)
    assert (run / "metrics.jsonl").read_text() == before


def test_rnn_trains(tmp_path, mess3, tiny_rnn, tiny_train):
    run = train(mess3, tiny_rnn, tiny_train, tmp_path / "rnn", progress=False)
    # the RNN has no prefix-tree path: the evaluator falls back to whole sequences
    final = read_metrics(run)[-1]
    model = load_checkpoint(list_checkpoints(run)[-1][1])
    evaluator = ExactEvaluator(mess3, 4)
    assert evaluator(model, model=model) == evaluator(model)
    assert final["exact_loss"] == pytest.approx(evaluator(model)[0], abs=1e-6)
    model = load_checkpoint(list_checkpoints(run)[-1][1])
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2, 0]]))
    assert cache["blocks.1.hook_hidden"].shape == (1, 4, 8)


def test_corrupt_and_foreign_checkpoints(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.tokens = 64
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "run", progress=False)
    _, path = list_checkpoints(run)[-1]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InvalidInput, match="not a readable checkpoint"):
        load_checkpoint(path)
    path.write_bytes(b"hello")
    with pytest.raises(InvalidInput, match="not a readable checkpoint"):
        read_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(InvalidInput, match="not a beliefgeo checkpoint"):
        load_checkpoint(path)
    with pytest.raises(InvalidInput, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_fresh_run_refuses_nonempty_dir_and_keeps_it(tmp_path, mess3, tiny_transformer, tiny_train):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="--resume"):
        train(mess3, tiny_transformer, tiny_train, out, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_resume_refuses_changed_settings(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.tokens = 64
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "run", progress=False)
    tiny_train.lr = 0.1
    with pytest.raises(InvalidInput, match=r"drop or fix: train.lr 0.1 \(run has 0.003\)"):
        train(mess3, tiny_transformer, tiny_train, run, resume=True, progress=False)
    with pytest.raises(InvalidInput, match="does not exist"):
        train(mess3, tiny_transformer, tiny_train, tmp_path / "empty", resume=True)
    assert math.isfinite(read_run_config(run)["optimal_loss"])


def test_format_1_runs_load_but_do_not_resume(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.tokens = 64
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "run", progress=False)
    config = read_run_config(run)
    old = {**config, "format": "beliefgeo-run/1", "data": dict(config["data"])}
    del old["data"]["trained_positions"]
    (run / "config.json").write_text(json.dumps(old))
    assert trained_positions(read_run_config(run)) == 3  # n_ctx - 1: the last was never trained
    assert load_checkpoint(list_checkpoints(run)[-1][1]) is not None
    with pytest.raises(InvalidInput, match="beliefgeo-run/1 run"):
        train(mess3, tiny_transformer, tiny_train, run, resume=True, progress=False)


def test_sign_flips_of_a_known_update_sequence():
    from models.sign_flips import SignFlips

    param = torch.nn.Parameter(torch.zeros(4))
    flips = SignFlips([param])

    def update(delta):
        flips.snapshot()
        with torch.no_grad():
            param.add_(torch.tensor(delta, dtype=torch.float32))
        flips.record()

    assert flips.summary() == {"sign_flip_frac": None, "sign_flip_steps": 0}
    update([1.0, -1.0, 0.0, 2.0])  # first update: no pair yet
    assert flips.summary() == {"sign_flip_frac": None, "sign_flip_steps": 0}
    update([1.0, 1.0, 3.0, -1.0])  # vs previous: same, flip, (zero before), flip -> 2/3
    update([-1.0, 1.0, 1.0, 0.0])  # flip, same, same, (zero now) -> 1/3
    summary = flips.summary()
    assert summary["sign_flip_steps"] == 2
    assert summary["sign_flip_frac"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    kept = flips.state()  # a checkpoint here; a resumed copy continues identically
    copy = SignFlips([param])
    copy.load_state(kept)
    update([-1.0, -1.0, -1.0, -1.0])  # same, flip, flip, (zero before) -> 2/3
    assert flips.summary() == {"sign_flip_frac": pytest.approx(2 / 3), "sign_flip_steps": 1}
    assert torch.equal(copy.previous, torch.tensor([-1, 1, 1, 0], dtype=torch.int8))


def test_sign_flips_and_exact_eval_in_the_metrics(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.exact_eval = "every"
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "every", progress=False)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    checkpoints = [line for line in lines if "sign_flip_steps" in line]
    assert [c["step"] for c in checkpoints] == read_run_config(run)["checkpoints"]["steps"]
    # update pairs (k-1, k) for k = 2..30, each counted in exactly one interval
    assert sum(c["sign_flip_steps"] for c in checkpoints) == 30 - 1
    for before, line in zip(checkpoints, checkpoints[1:], strict=False):
        assert line["sign_flip_steps"] == line["step"] - max(before["step"], 1)
        assert (line["sign_flip_frac"] is None) == (line["sign_flip_steps"] == 0)
    assert all("exact_loss" in c for c in checkpoints)
    for mode, expected in [("final", [30]), ("off", [])]:
        tiny_train.exact_eval = mode
        other = train(mess3, tiny_transformer, tiny_train, tmp_path / mode, progress=False)
        with_exact = [m["step"] for m in read_metrics(other) if "exact_loss" in m]
        assert with_exact == expected
        # exact evaluation reads the model only: the training itself is unchanged
        assert [m["loss"] for m in read_metrics(other)] == [m["loss"] for m in lines]


def test_finite_training_set_epochs_and_resume(
    tmp_path, mess3, tiny_transformer, tiny_train, resume_is_bit_identical
):
    from models.data import TrainingData, finite_rows

    n, batch = 20, 8
    rows = np.concatenate([finite_rows(3, step, batch, n) for step in range(5)])  # 40 = 2 epochs
    assert sorted(rows[:n]) == list(range(n)) and sorted(rows[n:]) == list(range(n))
    assert not np.array_equal(rows[:n], rows[n:])  # each epoch its own seeded order
    data = TrainingData(mess3, 4, batch, 3, n)
    fixed = {tuple(r) for r in data.fixed.tolist()}
    assert all(tuple(r) in fixed for step in range(6) for r in data.batch(step).tolist())
    assert data.fixed.shape == (n, 5)

    tiny_train.train_sequences = 24
    resume_is_bit_identical(mess3, tiny_transformer, tiny_train, tmp_path)


def test_train_leaves_torch_threads_and_rng_alone(tmp_path, mess3, tiny_transformer, tiny_train):
    tiny_train.tokens = 64
    run = train(mess3, tiny_transformer, tiny_train, tmp_path / "run", progress=False)
    (run / "checkpoints" / "tokens_000000000064.pt").unlink()  # make the resume do work
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    try:
        train(mess3, tiny_transformer, tiny_train, run, resume=True, progress=False)
        assert torch.get_num_threads() == 3
        assert torch.equal(torch.get_rng_state(), before)
    finally:
        torch.set_num_threads(threads)


def test_bad_threads_env_and_device(monkeypatch):
    from models.compute import cpu_threads, pick_device

    for bad in ("x", "0", "-2", "1.5"):
        monkeypatch.setenv("BELIEFGEO_THREADS", bad)
        with pytest.raises(InvalidInput, match="BELIEFGEO_THREADS"):
            cpu_threads()
    monkeypatch.setenv("BELIEFGEO_THREADS", "2")
    assert cpu_threads() == 2
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInput, match="no CUDA GPU"):
            pick_device("cuda")
        assert pick_device("auto").type == "cpu"


def test_metrics_reader_skips_a_half_written_line(tmp_path):
    from models.run_files import trim_metrics

    run = tmp_path / "run"
    run.mkdir()
    good = [{"step": 0, "loss": 1.0}, {"step": 10, "loss": 0.9}, {"step": 20, "loss": 0.8}]
    text = "".join(json.dumps(r) + "\n" for r in good)
    (run / "metrics.jsonl").write_text(text + '{"step": 30, "lo')  # killed mid-write
    assert read_metrics(run) == good
    trim_metrics(run, keep_through=10)
    assert (run / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in good[:2])
    assert read_metrics(tmp_path / "absent") == []

"""models — the networks under study, their hooks, training and checkpoints (imports hmm only).

File map:
  the networks
    transformer.py    TransformerConfig, build_transformer (TransformerBridge.boot_native), the
                      transformer's residual hook names, PlainForward (the training forward over
                      the bridge's parameters; refuses settings it does not compute)
    rnn.py            StackedRNN (embedding -> recurrent layers -> unembedding, a
                      HookedRootModule), RNNConfig, ElmanRNN (blocks.{l}.hook_pre / hook_hidden)
    gated.py          LSTMConfig, GRUConfig, GatedRNN: torch's LSTM and GRU cells with a hook on
                      every gate pre-activation, the cell and the hidden state; fused_forward
    families.py       THE list of model families: their unit functions and size flags (no torch),
                      check_act_fn (an LSTM or GRU has none to choose), describe_model
    init_scale.py     init_scale: checks it, multiplies every initial weight matrix by it
    nonlinearities.py unit functions by name (NONLINEARITIES)
    architectures.py  ARCHITECTURES (each family's config class), build_model,
                      make_model_config (refuses act_fn for lstm/gru),
                      residual_hooks (THE probe hook list), CONCAT (their side-by-side key),
                      unit_hooks, hook_label, the hook-name structure (map_kind: residual or
                      recurrent, n_blocks), final_layer_hook, training_forward and
                      check_training_forward, the recurrence for probes (recurrent_layers,
                      recurrent_state_hooks, recurrent_step, recurrent_weight, layer_input_hook)
    prefix_forward.py residual activations of every prefix of a prefix tree (a KV cache)
  training
    recipes.py        TrainConfig, built-in recipes (default, paper, memorize), recipe JSON files,
                      how flags, recipe and a resumed run's config combine
    training.py       train_run (CLI `train`) and train: the loop, top to bottom
    data.py           the seeded data stream: fresh sequences or a fixed set revisited by epoch
    loss.py           next-token losses and the exact expected loss over every sequence
    schedules.py      checkpoint steps (log-spaced then linear) and the learning-rate schedule
    sign_flips.py     sign flips of successive updates, per checkpoint interval, and the run's
                      optimiser stepped on pure-noise gradients (their null)
    progress.py       progress bar or stderr lines, and the run's clocks
    compute.py        the run's torch device and CPU thread count (BELIEFGEO_THREADS)
  run files
    checkpoints.py    save/read checkpoints (weights_only), load_checkpoint, trained_positions,
                      load_run_process, opening a run for --resume
    run_files.py      what is a run folder; config.json (read_run_config, typed: RunConfig /
                      read_config), metrics.jsonl (read_metrics, typed: MetricsLine), checkpoint
                      paths and listing; no torch
"""

from __future__ import annotations

import importlib

# the package's public names and their modules, imported on first use: `import models.run_files`
# (or models.families) then costs no torch, so the CLI checks its input before loading it
_EXPORTS = {
    "GRUConfig": "models.gated",
    "LSTMConfig": "models.gated",
    "RNNConfig": "models.rnn",
    "TransformerConfig": "models.transformer",
    "build_model": "models.architectures",
    "list_checkpoints": "models.run_files",
    "load_checkpoint": "models.checkpoints",
    "load_run_process": "models.checkpoints",
    "read_run_config": "models.run_files",
    "residual_hooks": "models.architectures",
    "unit_hooks": "models.architectures",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")

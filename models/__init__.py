"""models — the networks under study, their hooks, training and checkpoints (imports hmm only).

File map:
    transformer.py    TransformerConfig, build_transformer (TransformerBridge.boot_native), the
                      transformer's residual hook names
    rnn.py            RNNConfig, ElmanRNN (HookedRootModule: blocks.{l}.hook_pre / hook_hidden),
                      the RNN's hidden hook names
    architectures.py  build_model, make_model_config, residual_hooks (THE probe hook list),
                      unit_hooks (pre-activation hook + activation per nonlinear layer)
    recipes.py        TrainConfig, built-in recipes `default` and `paper`, recipe JSON files
    training.py       train_run (CLI `train`), train, checkpoint schedule, seeded data stream,
                      exact expected loss over every sequence (ExactEvaluator)
    checkpoints.py    save/read checkpoints (weights_only), load_checkpoint, read_run_config,
                      load_run_process
    nonlinearities.py unit functions by name (NONLINEARITIES), the activations each family supports
    run_files.py      the metrics log reader, checkpoint paths and listing
"""

from models.architectures import build_model, residual_hooks, unit_hooks
from models.checkpoints import load_checkpoint, load_run_process, read_run_config
from models.rnn import RNNConfig
from models.transformer import TransformerConfig

__all__ = [
    "RNNConfig",
    "TransformerConfig",
    "build_model",
    "load_checkpoint",
    "load_run_process",
    "read_run_config",
    "residual_hooks",
    "unit_hooks",
]

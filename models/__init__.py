"""models — the networks under study, their hooks, training and checkpoints (imports hmm only).

File map:
    transformer.py    TransformerConfig, build_transformer (TransformerBridge.boot_native), the
                      transformer's residual hook names
    rnn.py            RNNConfig, ElmanRNN (HookedRootModule: blocks.{l}.hook_pre / hook_hidden),
                      the RNN's hidden hook names
    architectures.py  build_model, make_model_config, residual_hooks (THE probe hook list),
                      unit_hooks (pre-activation hook + activation per nonlinear layer)
    recipes.py        TrainConfig, built-in recipes `default`, `paper`, `memorize`, recipe JSON
                      files; resolve_run (recipe + flags + a resumed run's config) and
                      resume_clashes (THE resume check); build_optimizer
    training.py       the training loop: train_run (CLI `train`), train, run_config
    loss.py           next_token_losses, ExactEvaluator (exact expected loss over every sequence)
    data.py           the seeded data stream: fresh batches or a finite set revisited by epoch
    schedules.py      checkpoint schedule (log then linear), learning-rate schedule
    sign_flips.py     SignFlips: successive-update sign flips per checkpoint interval
    progress.py       tqdm bar / stderr lines and the run's clocks (wall, eval, CPU seconds)
    compute.py        cpu_threads (BELIEFGEO_THREADS), torch_threads (restores), pick_device
    checkpoints.py    save/read checkpoints (weights_only), load_checkpoint, read_run_config,
                      trained_positions, open_run (fresh start or resume), load_run_process
    nonlinearities.py unit functions by name (NONLINEARITIES), the activations each family supports
    run_files.py      the metrics log reader and trimming, checkpoint paths and listing
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

"""The model families and their activations, by name, without importing torch.

The one list every entry point reads: the command line builds its `--arch` and `--act-fn` choices
and help from it at parse time (so `beliefgeo --help` stays instant), recipes, sweep specs and
compare-phases run lists are checked against it, and models.architectures maps each name to its
config class. An LSTM or GRU has no activation to choose: its cell fixes σ gates and tanh.
"""

from __future__ import annotations

TRANSFORMER_ACTIVATIONS = ("relu", "gelu", "silu")  # TransformerLens's native MLP supports these
RNN_ACTIVATIONS = ("tanh", "sigmoid", "relu")
ARCH_ACTIVATIONS: dict[str, tuple[str, ...]] = {
    "transformer": TRANSFORMER_ACTIVATIONS,
    "rnn": RNN_ACTIVATIONS,
    "lstm": (),
    "gru": (),
}
ARCH_NAMES = tuple(ARCH_ACTIVATIONS)
DEFAULT_ACT_FN: dict[str, str | None] = {
    "transformer": "relu",
    "rnn": "tanh",
    "lstm": None,
    "gru": None,
}
ACT_FN_HELP = "; ".join(
    f"{arch}: {'|'.join(acts)}" if acts else f"{arch}: none (its cell fixes them)"
    for arch, acts in ARCH_ACTIVATIONS.items()
)

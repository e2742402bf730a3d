"""The recurrent comparison models' common frame, and the Elman RNN.

`StackedRNN` is embedding -> stacked recurrent layers -> unembedding, with TransformerLens hook
points (`HookedRootModule`, so `run_with_cache` works as for the transformer):
    u^0_t = embed(x_t),  u^l_t = h^{l-1}_t,  logits_t = W_U h^{L-1}_t + b_U.
Its layers are Elman layers (here) or gated cells (models/gated.py: LSTM, GRU). Every layer
class offers the same few things, which models.architectures turns into the public recurrence
interface (probes never import this module):
  STATE_HOOKS   hook suffixes whose concatenation on the last axis is the layer's full recurrent
                state s_t, hidden state first (Elman, GRU: h_t; LSTM: (h_t, c_t));
  units()       unit label -> (pre-activation hook suffix, activation name), every nonlinearity;
  step(s, u)    one token: previous state (..., D), input (..., In) -> (h_t (..., H), s_t (..., D));
  recurrent_weight()   the square (H, H) matrix through which h_{t-1} drives the new content.

Elman layer (Elman 1990): h_t = f(W_in u_t + b + W_rec h_{t-1}), h_{-1} = 0, f tanh, sigmoid or
ReLU: tanh and sigmoid saturate, ReLU does not, and the recurrent Jacobian
dh_t/dh_{t-1} = diag(f'(z_t)) W_rec is square by construction.

Hooks (per layer l): `blocks.{l}.hook_pre` (n, L, H) the pre-activations z_t, and
`blocks.{l}.hook_hidden` (n, L, H) the hidden state after every token. Both are applied to the whole
sequence after the recurrence, so `run_with_cache` sees every position; an intervention on them
reaches later layers and the logits but not the same layer's own recurrence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from hmm.errors import InvalidInput
from models.init_scale import check_init_scale, scale_weight_matrices
from models.nonlinearities import RNN_ACTIVATIONS, nonlinearity


@dataclass
class RNNConfig:
    """Shape of the RNN; `d_vocab` = the process's symbols, `n_ctx` = the training length.

    `init_scale` multiplies every initial weight matrix (models/init_scale.py says which).
    """

    d_vocab: int = 3
    hidden: int = 64
    n_layers: int = 1
    act_fn: str = "tanh"
    seed: int = 0
    n_ctx: int = 10
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        self.init_scale = check_init_scale(self.init_scale)
        if self.act_fn not in RNN_ACTIVATIONS:
            raise InvalidInput(
                f"the RNN supports act-fn {', '.join(RNN_ACTIVATIONS)}, not {self.act_fn!r}; "
                "for gelu or silu use --arch transformer"
            )
        check_sizes(self, "rnn")

    def to_dict(self) -> dict:
        return asdict(self)


def check_sizes(config: object, arch: str) -> None:
    """InvalidInput unless d_vocab, hidden, n_layers and n_ctx of `config` are >= 1."""
    for name in ("d_vocab", "hidden", "n_layers", "n_ctx"):
        if getattr(config, name) < 1:
            raise InvalidInput(f"{arch} {name} must be >= 1, got {getattr(config, name)}")


class ElmanLayer(nn.Module):
    """One recurrent layer: input map (with bias), recurrent map (no bias), pointwise f."""

    STATE_HOOKS = ("hook_hidden",)

    def __init__(self, d_in: int, hidden: int, act_fn: str) -> None:
        super().__init__()
        self.act_fn = act_fn
        self.W_in = nn.Linear(d_in, hidden)
        self.W_rec = nn.Linear(hidden, hidden, bias=False)
        self.hook_pre = HookPoint()
        self.hook_hidden = HookPoint()

    def units(self) -> dict[str, tuple[str, str]]:
        """One unit population: the hidden units, f applied to `hook_pre`."""
        return {"": ("hook_pre", self.act_fn)}

    def recurrent_weight(self) -> Tensor:
        return self.W_rec.weight

    def step(self, h_prev: Tensor, u_t: Tensor) -> tuple[Tensor, Tensor]:
        """One step: previous hidden (..., H), input (..., d_in) -> (hidden, state = hidden)."""
        h = nonlinearity(self.act_fn)(self.W_in(u_t) + self.W_rec(h_prev))
        return h, h

    def forward(self, u: Tensor) -> Tensor:
        """Inputs (n, L, d_in) -> hidden states (n, L, H) after every token."""
        f = nonlinearity(self.act_fn)
        drive = self.W_in(u)  # input contribution for all positions at once
        h = drive.new_zeros(drive.shape[0], drive.shape[2])
        pre = []
        for t in range(drive.shape[1]):
            z = drive[:, t] + self.W_rec(h)
            h = f(z)
            pre.append(z)
        # recomputing f on the hooked tensor keeps values identical and makes hook_pre edits count
        return self.hook_hidden(f(self.hook_pre(torch.stack(pre, dim=1))))


class StackedRNN(HookedRootModule):
    """Embedding -> recurrent layers -> unembedding; model(tokens (n, L)) -> logits (n, L, V).

    Subclasses give `make_layer(d_in)`; the weights are drawn from `config.seed` without touching
    the caller's RNG, then every weight matrix is multiplied by `config.init_scale`.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.embed = nn.Embedding(config.d_vocab, config.hidden)
            self.hook_embed = HookPoint()
            self.blocks = nn.ModuleList(
                self.make_layer(config.hidden) for _ in range(config.n_layers)
            )
            self.unembed = nn.Linear(config.hidden, config.d_vocab)
        scale_weight_matrices(self, config.init_scale)
        self.setup()

    def make_layer(self, d_in: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2:
            raise InvalidInput(f"the RNN takes tokens of shape (n, L), got {tuple(tokens.shape)}")
        x = self.hook_embed(self.embed(tokens))
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


class ElmanRNN(StackedRNN):
    """The Elman RNN of an RNNConfig."""

    def make_layer(self, d_in: int) -> ElmanLayer:
        return ElmanLayer(d_in, self.config.hidden, self.config.act_fn)


def build_rnn(config: RNNConfig) -> ElmanRNN:
    """The RNN of `config`, initialised from `config.seed`."""
    return ElmanRNN(config)

"""The recurrent comparison model: a stacked Elman RNN with TransformerLens hook points.

    h^l_t = f(W^l_in u^l_t + b^l + W^l_rec h^l_{t-1}),  h^l_{-1} = 0,
    u^0_t = embed(x_t),  u^l_t = h^{l-1}_t
(Elman 1990), then logits_t = W_U h^{L-1}_t + b_U. f is tanh, sigmoid or ReLU: tanh and sigmoid
saturate, ReLU does not, and the recurrent Jacobian dh_t/dh_{t-1} = diag(f'(z_t)) W_rec is square by
construction.

Hooks (per layer l): `blocks.{l}.hook_pre` (n, L, H) the pre-activations z_t, and
`blocks.{l}.hook_hidden` (n, L, H) the hidden state after every token. Both are applied to the whole
sequence after the recurrence, so `run_with_cache` sees every position; an intervention on them
reaches later layers and the logits but not the same layer's own recurrence. Per-step work (the
recurrent Jacobian, Lyapunov exponents) goes through `models.architectures.recurrent_step`, the
public face of `ElmanLayer.step`.
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
        for name in ("d_vocab", "hidden", "n_layers", "n_ctx"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"rnn {name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return asdict(self)


class ElmanLayer(nn.Module):
    """One recurrent layer: input map (with bias), recurrent map (no bias), pointwise f."""

    def __init__(self, d_in: int, hidden: int, act_fn: str) -> None:
        super().__init__()
        self.act_fn = act_fn
        self.W_in = nn.Linear(d_in, hidden)
        self.W_rec = nn.Linear(hidden, hidden, bias=False)
        self.hook_pre = HookPoint()
        self.hook_hidden = HookPoint()

    def step(self, u_t: Tensor, h_prev: Tensor) -> tuple[Tensor, Tensor]:
        """One step: input (..., d_in), previous hidden (..., H) -> (pre-activation, hidden)."""
        z = self.W_in(u_t) + self.W_rec(h_prev)
        return z, nonlinearity(self.act_fn)(z)

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


class ElmanRNN(HookedRootModule):
    """Embedding -> Elman layers -> unembedding; model(tokens (n, L)) -> logits (n, L, V)."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
            torch.manual_seed(config.seed)
            self.embed = nn.Embedding(config.d_vocab, config.hidden)
            self.hook_embed = HookPoint()
            self.blocks = nn.ModuleList(
                ElmanLayer(config.hidden, config.hidden, config.act_fn)
                for _ in range(config.n_layers)
            )
            self.unembed = nn.Linear(config.hidden, config.d_vocab)
        scale_weight_matrices(self, config.init_scale)
        self.setup()

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.ndim != 2:
            raise InvalidInput(f"the RNN takes tokens of shape (n, L), got {tuple(tokens.shape)}")
        x = self.hook_embed(self.embed(tokens))
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def build_rnn(config: RNNConfig) -> ElmanRNN:
    """The RNN of `config`, initialised from `config.seed`."""
    return ElmanRNN(config)


def rnn_residual_hooks(n_layers: int) -> list[str]:
    """The hidden-state hooks probed for beliefs, in depth order."""
    return [f"blocks.{layer}.hook_hidden" for layer in range(n_layers)]

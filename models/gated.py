"""LSTM and GRU beside the Elman RNN: gated recurrent layers with a hook on every state and gate.

Per layer, input u_t (the embedding for layer 0, the hidden state of the layer below above it),
in torch's conventions and parameter layout (nn.LSTM, nn.GRU):

LSTM (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000):
    [i; f; g; o] = W_ih u_t + b_ih + W_hh h_{t-1} + b_hh                 (4H, rows in that order)
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g),   h_t = σ(o) ⊙ tanh(c_t)
    recurrent state s_t = (h_t, c_t), 2H wide
GRU (Cho et al. 2014):
    [r; z] = W_i{r,z} u_t + b_i{r,z} + W_h{r,z} h_{t-1} + b_h{r,z}
    n = W_in u_t + b_in + σ(r) ⊙ (W_hn h_{t-1} + b_hn)
    h_t = (1 − σ(z)) ⊙ tanh(n) + σ(z) ⊙ h_{t-1}
    recurrent state s_t = h_t, H wide
with h_{-1} = c_{-1} = 0. σ and tanh are models.nonlinearities' "sigmoid" and "tanh", the same
functions whose derivatives the unit diagnostics take. The nonlinearities are the cell's own, so a
gated model has no act_fn.

Hooks of layer l, each (n, L, H) at every position (docs/training.md lists them):
    LSTM  blocks.{l}.hook_input_gate_pre (i), hook_forget_gate_pre (f), hook_candidate_pre (g),
          hook_output_gate_pre (o), hook_cell (c_t), hook_hidden (h_t)
    GRU   blocks.{l}.hook_reset_gate_pre (r), hook_update_gate_pre (z), hook_candidate_pre (n,
          after the reset gate), hook_hidden (h_t)
As in the Elman RNN they are applied to the whole sequence after the recurrence, and the layer's
output is recomputed from the hooked tensors (one elementwise scan), so an edit of any of them
reaches the layer's own cell and hidden states, later layers and the logits, but not the same
layer's recurrence.

Each layer keeps its weights in a one-layer torch module (`blocks.{l}.cell`, an nn.LSTM or
nn.GRU: state-dict names `blocks.{l}.cell.weight_ih_l0` ...), initialised as torch does (uniform
in ±1/√H). The hooked forward reads them step by step; `fused_forward` runs torch's own
recurrence on the same parameters for training (about twice as fast on a CPU), checked against
the hooked forward on every run's first batch (models.architectures.check_training_forward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from models.init_scale import check_init_scale
from models.nonlinearities import nonlinearity
from models.rnn import StackedRNN, check_sizes

SIGMOID, TANH = nonlinearity("sigmoid"), nonlinearity("tanh")


@dataclass
class GatedConfig:
    """Shape of a gated RNN (LSTMConfig or GRUConfig); fields as RNNConfig's, without act_fn."""

    d_vocab: int = 3
    hidden: int = 64
    n_layers: int = 1
    seed: int = 0
    n_ctx: int = 10
    init_scale: float = 1.0
    cell = ""  # the subclass's cell, a class attribute (not a config field)

    def __post_init__(self) -> None:
        self.init_scale = check_init_scale(self.init_scale)
        check_sizes(self, self.cell)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LSTMConfig(GatedConfig):
    cell = "lstm"


@dataclass
class GRUConfig(GatedConfig):
    cell = "gru"


def linear_scan(decay: Tensor, drive: Tensor) -> Tensor:
    """x_t = decay_t ⊙ x_{t-1} + drive_t from x_{-1} = 0: (n, L, H), (n, L, H) -> (n, L, H)."""
    x, out = torch.zeros_like(drive[:, 0]), []
    for t in range(drive.shape[1]):
        x = decay[:, t] * x + drive[:, t]
        out.append(x)
    return torch.stack(out, dim=1)


class GatedLayer(nn.Module):
    """One gated layer: its torch module's weights, hooks, and the step both forwards share."""

    TORCH_CELL: ClassVar[type[nn.RNNBase]]
    STATE_HOOKS: ClassVar[tuple[str, ...]]
    # unit label -> (pre-activation hook, activation): every nonlinearity of the cell
    UNITS: ClassVar[dict[str, tuple[str, str]]]

    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = self.TORCH_CELL(d_in, hidden, batch_first=True)
        for hook in dict.fromkeys([*(hook for hook, _ in self.UNITS.values()), *self.STATE_HOOKS]):
            setattr(self, hook, HookPoint())

    @property
    def state_width(self) -> int:
        return self.hidden * len(self.STATE_HOOKS)

    def units(self) -> dict[str, tuple[str, str]]:
        return dict(self.UNITS)

    def recurrent_weight(self) -> Tensor:
        """The candidate's recurrent block (W_hg of an LSTM, W_hn of a GRU), (H, H): the Elman
        path, through which h_{t-1} drives the new content; the gates' blocks modulate it."""
        return self.cell.weight_hh_l0[2 * self.hidden : 3 * self.hidden]

    def step(self, state_prev: Tensor, u_t: Tensor) -> tuple[Tensor, Tensor]:
        """One token: previous state (..., D), input (..., d_in) -> (hidden (..., H), state)."""
        drive = F.linear(u_t, self.cell.weight_ih_l0, self.cell.bias_ih_l0)
        _, hidden, state = self.advance(drive, state_prev)
        return hidden, state

    def forward(self, u: Tensor) -> Tensor:
        """Inputs (n, L, d_in) -> hidden states (n, L, H) after every token."""
        drive = F.linear(u, self.cell.weight_ih_l0, self.cell.bias_ih_l0)  # every position
        state = drive.new_zeros(drive.shape[0], self.state_width)
        parts = []
        for t in range(drive.shape[1]):
            part, _, state = self.advance(drive[:, t], state)
            parts.append(part)
        return self.hooked([torch.stack(p, dim=1) for p in zip(*parts, strict=True)])

    def recurrent_drive(self, h_prev: Tensor) -> Tensor:
        return F.linear(h_prev, self.cell.weight_hh_l0, self.cell.bias_hh_l0)

    def advance(self, drive: Tensor, state: Tensor) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        """drive = W_ih u_t + b_ih (..., G·H), state (..., D) -> (what `hooked` needs of this
        step, h_t, s_t)."""
        raise NotImplementedError

    def hooked(self, parts: list[Tensor]) -> Tensor:
        """The stacked parts (n, L, H) each -> hidden states (n, L, H) through the hooks."""
        raise NotImplementedError


class LSTMLayer(GatedLayer):
    TORCH_CELL = nn.LSTM
    STATE_HOOKS = ("hook_hidden", "hook_cell")
    UNITS = {
        "input_gate": ("hook_input_gate_pre", "sigmoid"),
        "forget_gate": ("hook_forget_gate_pre", "sigmoid"),
        "candidate": ("hook_candidate_pre", "tanh"),
        "output_gate": ("hook_output_gate_pre", "sigmoid"),
        "cell": ("hook_cell", "tanh"),  # h_t = σ(o) ⊙ tanh(c_t): the cell state is tanh's input
    }

    def advance(self, drive, state):
        h, c = state[..., : self.hidden], state[..., self.hidden :]
        i, f, g, o = (drive + self.recurrent_drive(h)).chunk(4, dim=-1)
        c = SIGMOID(f) * c + SIGMOID(i) * TANH(g)
        h = SIGMOID(o) * TANH(c)
        return (i, f, g, o), h, torch.cat([h, c], dim=-1)

    def hooked(self, parts):
        i, f, g, o = parts
        i, f = self.hook_input_gate_pre(i), self.hook_forget_gate_pre(f)
        g, o = self.hook_candidate_pre(g), self.hook_output_gate_pre(o)
        cell = self.hook_cell(linear_scan(SIGMOID(f), SIGMOID(i) * TANH(g)))
        return self.hook_hidden(SIGMOID(o) * TANH(cell))


class GRULayer(GatedLayer):
    TORCH_CELL = nn.GRU
    STATE_HOOKS = ("hook_hidden",)
    UNITS = {
        "reset_gate": ("hook_reset_gate_pre", "sigmoid"),
        "update_gate": ("hook_update_gate_pre", "sigmoid"),
        "candidate": ("hook_candidate_pre", "tanh"),
    }

    def advance(self, drive, state):
        x_r, x_z, x_n = drive.chunk(3, dim=-1)
        h_r, h_z, h_n = self.recurrent_drive(state).chunk(3, dim=-1)
        r, z = x_r + h_r, x_z + h_z
        update = SIGMOID(z)
        h = (1 - update) * TANH(x_n + SIGMOID(r) * h_n) + update * state
        return (r, z, x_n, h_n), h, h

    def hooked(self, parts):
        r, z, x_n, h_n = parts
        r, z = self.hook_reset_gate_pre(r), self.hook_update_gate_pre(z)
        n = self.hook_candidate_pre(x_n + SIGMOID(r) * h_n)
        update = SIGMOID(z)
        return self.hook_hidden(linear_scan(update, (1 - update) * TANH(n)))


LAYERS: dict[str, type[GatedLayer]] = {"lstm": LSTMLayer, "gru": GRULayer}


class GatedRNN(StackedRNN):
    """An LSTM or GRU (by its config's cell) in the StackedRNN frame."""

    def make_layer(self, d_in: int) -> GatedLayer:
        return LAYERS[self.config.cell](d_in, self.config.hidden)

    def fused_forward(self, tokens: Tensor) -> Tensor:
        """tokens (n, L) -> logits (n, L, V) through torch's fused recurrence, no hooks: the
        training forward (models.architectures.training_forward)."""
        with _ieee_fp32_rnn(tokens.is_cuda):
            x = self.embed(tokens)
            for block in self.blocks:
                x = block.cell(x)[0]
            return self.unembed(x)


@contextlib.contextmanager
def _ieee_fp32_rnn(on_gpu: bool) -> Iterator[None]:
    """On a GPU, cuDNN's recurrence in full float32: torch lets it use TF32 by default
    (torch.backends.cudnn.rnn.fp32_precision "tf32", ~1e-3 relative), unlike the hooked forward's
    matmuls, which would fail check_training_forward. The caller's setting is restored."""
    if not on_gpu:
        yield
        return
    before = torch.backends.cudnn.rnn.fp32_precision
    torch.backends.cudnn.rnn.fp32_precision = "ieee"
    try:
        yield
    finally:
        torch.backends.cudnn.rnn.fp32_precision = before


def build_gated(config: GatedConfig) -> GatedRNN:
    """The LSTM or GRU of `config`, initialised from `config.seed`."""
    return GatedRNN(config)

"""The one home of unit functions by name, for the models that use them and the probes that measure
their regimes.

The transformer's MLP takes TransformerLens's native functions (gelu = exact erf GELU, gelu_new =
its tanh approximation); the Elman RNN's units are tanh, sigmoid or ReLU, the LSTM's and GRU's
gates sigmoid and their candidates tanh; identity is the linear reference. Which activations each
family offers is models/families.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hmm.errors import InvalidInput
from models.families import FAMILIES

NONLINEARITIES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "gelu": F.gelu,
    "gelu_new": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "identity": lambda z: z,
}
TRANSFORMER_ACTIVATIONS = FAMILIES["transformer"].activations
RNN_ACTIVATIONS = FAMILIES["rnn"].activations


def nonlinearity(name: str) -> Callable[[Tensor], Tensor]:
    """The elementwise function called `name`, or InvalidInput listing the known ones."""
    if name not in NONLINEARITIES:
        raise InvalidInput(f"unknown activation {name!r}; known: {', '.join(NONLINEARITIES)}")
    return NONLINEARITIES[name]

"""LSTM and GRU (models/gated.py): hooks against torch's own modules, the recurrent step against
autograd on torch's step, the training forward, --act-fn refusal, resume and checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hmm.errors import InvalidInput
from models import build_model, residual_hooks, unit_hooks
from models.architectures import (
    arch_of,
    check_training_forward,
    layer_input_hook,
    make_model_config,
    recurrent_layers,
    recurrent_state_hooks,
    recurrent_step,
    recurrent_weight,
    training_forward,
)
from models.nonlinearities import nonlinearity

CELLS = ["lstm", "gru"]
H, LAYERS, N, L = 5, 2, 4, 6


def _model(cell: str, **settings) -> nn.Module:
    config = make_model_config(cell, **{"hidden": H, "n_layers": LAYERS, "n_ctx": L, **settings})
    return build_model(config).double().eval()


def _tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 3, (N, L), generator=torch.Generator().manual_seed(seed))


def _torch_stack(model: nn.Module, cell: str) -> nn.RNNBase:
    """An independent multi-layer nn.LSTM / nn.GRU holding the model's weights."""
    reference = (nn.LSTM if cell == "lstm" else nn.GRU)(
        H, H, num_layers=LAYERS, batch_first=True
    ).double()
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(block.cell, f"{name}_l0"))
    return reference


def _torch_states(reference: nn.RNNBase, embedded: torch.Tensor, cell: str) -> list[tuple]:
    """Per position t, torch's own (h_n, c_n or None) after the prefix 0..t: (LAYERS, N, H)."""
    states = []
    for t in range(embedded.shape[1]):
        _, final = reference(embedded[:, : t + 1])
        states.append(final if cell == "lstm" else (final, None))
    return states


def _torch_unit_values(reference, embedded, states, cell, layer, t) -> dict[str, torch.Tensor]:
    """Each unit population's activation at (layer, t) from torch's weights and torch's states:
    what nonlinearity(act)(hook) must give."""
    u = embedded[:, t] if layer == 0 else states[t][0][layer - 1]
    h_prev = states[t - 1][0][layer] if t else torch.zeros(N, H, dtype=u.dtype)
    weights = {
        name: getattr(reference, f"{name}_l{layer}")
        for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh")
    }
    drive = F.linear(u, weights["weight_ih"], weights["bias_ih"])
    recurrent = F.linear(h_prev, weights["weight_hh"], weights["bias_hh"])
    if cell == "lstm":
        i, f, g, o = (drive + recurrent).chunk(4, dim=-1)
        values = {"input_gate": i.sigmoid(), "forget_gate": f.sigmoid(), "output_gate": o.sigmoid()}
        return {**values, "candidate": g.tanh(), "cell": states[t][1][layer].tanh()}
    (x_r, x_z, x_n), (h_r, h_z, h_n) = drive.chunk(3, dim=-1), recurrent.chunk(3, dim=-1)
    reset = (x_r + h_r).sigmoid()
    return {"reset_gate": reset, "update_gate": (x_z + h_z).sigmoid(),
            "candidate": (x_n + reset * h_n).tanh()}  # fmt: skip


@pytest.mark.parametrize("cell", CELLS)
def test_hooks_equal_the_torch_modules_own_states_at_every_layer_and_position(cell):
    model = _model(cell)
    tokens = _tokens()
    logits, cache = model.run_with_cache(tokens)
    reference = _torch_stack(model, cell)
    embedded = cache["hook_embed"]
    with torch.no_grad():
        output, _ = reference(embedded)
        states = _torch_states(reference, embedded, cell)
    top = cache[f"blocks.{LAYERS - 1}.hook_hidden"]
    torch.testing.assert_close(top, output, rtol=0, atol=1e-12)
    torch.testing.assert_close(logits, model.unembed(output), rtol=0, atol=1e-12)
    for layer in range(LAYERS):
        for t in range(L):
            hidden, cell_state = states[t]
            got = cache[f"blocks.{layer}.hook_hidden"][:, t]
            torch.testing.assert_close(got, hidden[layer], rtol=0, atol=1e-12)
            if cell == "lstm":
                got = cache[f"blocks.{layer}.hook_cell"][:, t]
                torch.testing.assert_close(got, cell_state[layer], rtol=0, atol=1e-12)
            # every unit population: its activation applied to its hook is torch's gate value
            expected = _torch_unit_values(reference, embedded, states, cell, layer, t)
            units = {k.split(".")[-1]: v for k, v in unit_hooks(model).items()
                     if k.startswith(f"blocks.{layer}.")}  # fmt: skip
            assert set(units) == set(expected)
            for name, (hook, act) in units.items():
                value = nonlinearity(act)(cache[hook][:, t])
                torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_hook_names_units_and_state_hooks(cell):
    model = _model(cell)
    assert arch_of(model.config) == cell and recurrent_layers(model) == LAYERS
    states = {"lstm": ["hook_hidden", "hook_cell"], "gru": ["hook_hidden"]}[cell]
    assert residual_hooks(model) == [f"blocks.{b}.{h}" for b in range(LAYERS) for h in states]
    assert recurrent_state_hooks(model, 1) == [f"blocks.1.{h}" for h in states]
    gates = {
        "lstm": {"input_gate": ("hook_input_gate_pre", "sigmoid"),
                 "forget_gate": ("hook_forget_gate_pre", "sigmoid"),
                 "candidate": ("hook_candidate_pre", "tanh"),
                 "output_gate": ("hook_output_gate_pre", "sigmoid"),
                 "cell": ("hook_cell", "tanh")},
        "gru": {"reset_gate": ("hook_reset_gate_pre", "sigmoid"),
                "update_gate": ("hook_update_gate_pre", "sigmoid"),
                "candidate": ("hook_candidate_pre", "tanh")},
    }[cell]  # fmt: skip
    assert unit_hooks(model) == {
        f"blocks.{b}.{name}": (f"blocks.{b}.{hook}", act)
        for b in range(LAYERS)
        for name, (hook, act) in gates.items()
    }
    _, cache = model.run_with_cache(_tokens())
    for hook, _ in unit_hooks(model).values():
        assert cache[hook].shape == (N, L, H)
    inputs = [layer_input_hook(model, b) for b in range(LAYERS)]
    assert inputs == ["hook_embed", "blocks.0.hook_hidden"]


def _torch_one_step(reference: nn.RNNBase, cell: str, u: torch.Tensor, state: torch.Tensor):
    """torch's one-layer module, one token from `state` ((2H,) for an LSTM, (H,) for a GRU)."""
    if cell == "lstm":
        _, (h, c) = reference(u[None, None], (state[None, None, :H], state[None, None, H:]))
        return torch.cat([h[0, 0], c[0, 0]])
    _, h = reference(u[None, None], state[None, None])
    return h[0, 0]


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_jacobian_of_the_full_state_equals_autograd_on_torchs_step(cell):
    from torch.func import jacrev

    model = _model(cell)
    _, cache = model.run_with_cache(_tokens(1))
    width = {"lstm": 2 * H, "gru": H}[cell]
    for layer in range(LAYERS):
        step = recurrent_step(model, layer)
        reference = (nn.LSTM if cell == "lstm" else nn.GRU)(H, H, batch_first=True).double()
        reference.load_state_dict(model.blocks[layer].cell.state_dict())
        u = cache[layer_input_hook(model, layer)]
        state_hooks = recurrent_state_hooks(model, layer)
        states = torch.cat([cache[h] for h in state_hooks], dim=-1)  # (N, L, D)
        assert states.shape[-1] == width
        for i in range(N):
            previous = torch.zeros(width, dtype=torch.float64)
            for t in range(L):
                hidden, state = step(previous, u[i, t])
                torch.testing.assert_close(state, states[i, t], rtol=0, atol=1e-12)
                torch.testing.assert_close(hidden, state[:H], rtol=0, atol=0)
                ours = jacrev(lambda s, x=u[i, t], f=step: f(s, x)[1])(previous)
                theirs = torch.autograd.functional.jacobian(
                    lambda s, x=u[i, t], m=reference: _torch_one_step(m, cell, x, s), previous
                )
                assert ours.shape == (width, width)
                torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
                previous = states[i, t]
        block = model.blocks[layer].cell.weight_hh_l0
        assert torch.equal(recurrent_weight(model, layer), block[2 * H : 3 * H])


@pytest.mark.parametrize(
    ("cell", "hook", "value"),
    [("lstm", "hook_output_gate_pre", -1e4), ("lstm", "hook_input_gate_pre", -1e4),
     ("gru", "hook_update_gate_pre", 1e4)],
)  # fmt: skip
def test_an_edited_gate_reaches_the_states_and_logits(cell, hook, value):
    """Output gate shut or input gate shut (LSTM: c = 0, h = 0) or update gate open (GRU: h stays
    at h_{-1} = 0): the top layer reads zeros and the logits fall back to the unembedding bias."""
    model = _model(cell, n_layers=1)
    tokens = _tokens()
    logits = model.run_with_hooks(
        tokens, fwd_hooks=[(f"blocks.0.{hook}", lambda z, hook: torch.full_like(z, value))]
    )
    torch.testing.assert_close(logits, model.unembed.bias.expand(N, L, 3))


@pytest.mark.parametrize("cell", CELLS)
def test_act_fn_is_refused_with_one_line_wherever_the_model_config_is_built(cell, mess3):
    from models.recipes import resolve_run

    message = rf"^--act-fn tanh does not apply to --arch {cell}: [^\n]+$"
    with pytest.raises(InvalidInput, match=message):
        make_model_config(cell, act_fn="tanh")
    with pytest.raises(InvalidInput, match=message):
        resolve_run(mess3, None, arch=cell, act_fn="tanh")
    model, _ = resolve_run(mess3, "memorize", arch=cell, hidden=7)  # no act_fn: fine
    assert arch_of(model) == cell and model.hidden == 7 and model.init_scale == 0.1
    assert "act_fn" not in model.to_dict()


@pytest.mark.parametrize("cell", CELLS)
def test_training_forward_is_torchs_fused_recurrence_and_is_checked(cell):
    model = build_model(make_model_config(cell, hidden=H, n_layers=LAYERS, n_ctx=L))
    forward = training_forward(model)
    assert forward == model.fused_forward and forward is not model
    tokens = _tokens()
    check_training_forward(model, tokens)
    torch.testing.assert_close(forward(tokens), model(tokens))

    def drifted(batch):
        return forward(batch) + 1e-2

    with pytest.raises(RuntimeError, match="fused_forward"):
        check_training_forward(model, tokens, forward=drifted)


@pytest.mark.parametrize("cell", CELLS)
def test_seeded_causal_and_init_scale_multiplies_the_weight_matrices(cell):
    config = {"hidden": H, "n_layers": LAYERS, "n_ctx": L}
    a, b = (build_model(make_model_config(cell, **config)) for _ in range(2))
    other = build_model(make_model_config(cell, seed=1, **config))
    tokens = _tokens()
    assert torch.equal(a(tokens), b(tokens)) and not torch.equal(a(tokens), other(tokens))
    changed = tokens.clone()
    changed[:, 3:] = (changed[:, 3:] + 1) % 3
    assert torch.equal(a(tokens)[:, :3], a(changed)[:, :3])
    scaled = build_model(make_model_config(cell, init_scale=0.1, **config)).state_dict()
    for name, value in a.state_dict().items():
        expected = value * 0.1 if value.ndim >= 2 else value
        assert torch.equal(scaled[name], expected), name


@pytest.mark.parametrize("cell", CELLS)
def test_interrupted_run_resumes_bit_identical_and_checkpoints_load_weights_only(
    cell, tmp_path, mess3, tiny_train, resume_is_bit_identical
):
    from models.checkpoints import load_checkpoint
    from models.run_files import list_checkpoints

    config = make_model_config(cell, hidden=8, n_layers=2, n_ctx=4)
    whole = resume_is_bit_identical(mess3, config, tiny_train, tmp_path)
    model = load_checkpoint(list_checkpoints(whole)[-1][1])
    assert arch_of(model.config) == cell and not model.training
    _, cache = model.run_with_cache(torch.tensor([[0, 1, 2, 0]]))
    assert set(residual_hooks(model)) <= set(cache)


@pytest.mark.parametrize("cell", CELLS)
def test_train_run_and_resume_through_the_flags(cell, tmp_path):
    """The CLI's path: flags -> resolve_run -> config.json without act_fn; --resume rebuilds the
    same config from it, and an --act-fn on resume is refused like on a fresh run."""
    from models.checkpoints import read_run_config
    from models.training import train_run

    run = tmp_path / "run"
    options = {"hidden": 4, "n_ctx": 4}
    train_run("mess3", run, arch=cell, tokens=1024, options=options)
    config = read_run_config(run)
    assert config["arch"] == cell and "act_fn" not in config["model"]
    train_run("mess3", run, tokens=1024, resume=True, options=options)  # nothing clashes
    with pytest.raises(InvalidInput, match=f"does not apply to --arch {cell}"):
        train_run("mess3", run, act_fn="relu", resume=True)


def test_on_a_gpu_the_fused_recurrence_is_asked_for_full_float32_and_the_setting_restored():
    from models.gated import _ieee_fp32_rnn

    before = torch.backends.cudnn.rnn.fp32_precision
    with _ieee_fp32_rnn(on_gpu=True):
        assert torch.backends.cudnn.rnn.fp32_precision == "ieee"
    with pytest.raises(KeyboardInterrupt), _ieee_fp32_rnn(on_gpu=True):
        raise KeyboardInterrupt
    assert torch.backends.cudnn.rnn.fp32_precision == before
    with _ieee_fp32_rnn(on_gpu=False):  # the CPU path leaves the global alone
        assert torch.backends.cudnn.rnn.fp32_precision == before


@pytest.mark.parametrize("cell", CELLS)
def test_bad_shapes_and_fields_are_refused_with_one_line(cell):
    with pytest.raises(InvalidInput, match=rf"^{cell} hidden must be >= 1, got 0$"):
        make_model_config(cell, hidden=0)
    with pytest.raises(InvalidInput, match=r"^--init-scale must be > 0"):
        make_model_config(cell, init_scale=-1.0)
    for field in ("d_mlp", "cell"):  # another family's size; the class attribute is no field
        refusal = rf"{cell} model config has no field\(s\) \['{field}'\]"
        with pytest.raises(InvalidInput, match=refusal):
            make_model_config(cell, **{field: 8})

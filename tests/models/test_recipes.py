import json
from dataclasses import replace

import pytest

from hmm.errors import InvalidInput
from models.recipes import RECIPES, TrainConfig, resolve_recipe


def test_builtin_recipes():
    default, _ = resolve_recipe(None)
    assert default == RECIPES["default"]
    assert (default.optimizer, default.lr, default.schedule, default.batch_size) == (
        "adamw",
        3e-3,
        "cosine",
        128,
    )
    paper, settings = resolve_recipe("paper")
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.weight_decay, paper.schedule) == (
        "sgd",
        0.01,
        64,
        0.0,
        "constant",
    )
    assert settings == {}


def test_flags_override_and_none_does_not():
    train, _ = resolve_recipe("paper", tokens=1000, seed=None)
    assert train.tokens == 1000 and train.seed == RECIPES["paper"].seed


def test_recipe_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(
        json.dumps({"base": "paper", "lr": 0.05, "arch": "rnn", "model": {"hidden": 16}})
    )
    train, settings = resolve_recipe(str(path), seed=3)
    assert (train.optimizer, train.lr, train.seed) == ("sgd", 0.05, 3)
    assert train.recipe == "paper+r.json"
    assert settings == {"arch": "rnn", "model": {"hidden": 16}}


@pytest.mark.parametrize(
    "content, match",
    [
        ({"learning_rate": 1}, "unknown keys"),
        ({"lr": -1}, "lr must be > 0"),
        ({"optimizer": "adam"}, "optimizer must be"),
        ({"base": "fast"}, "base must be"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_recipe_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(InvalidInput, match=match):
        resolve_recipe(str(path))


def test_unknown_recipe_name():
    with pytest.raises(InvalidInput, match="default, paper"):
        resolve_recipe("fast")


def test_train_config_round_trips_through_json():
    config = TrainConfig(grad_clip=1.0)
    assert TrainConfig(**json.loads(json.dumps(config.to_dict()))) == config


def test_memorize_recipe_and_its_refusal():
    from hmm import load_process
    from models.recipes import check_fits, resolve_run

    train, settings = resolve_recipe("memorize")
    assert (train.train_sequences, train.exact_eval, train.weight_decay) == (512, "every", 0.0)
    assert settings == {"model": {"init_scale": 0.1}}
    model, _ = resolve_run(load_process("mess3"), "memorize", arch="rnn", act_fn="sigmoid")
    assert (model.init_scale, model.act_fn, model.n_ctx) == (0.1, "sigmoid", 10)
    check_fits(load_process("mess3"), 10, train)  # 3**10 inputs: fine
    with pytest.raises(InvalidInput, match="enumerable"):
        check_fits(load_process("random:symbols=4"), 10, train)  # 4**10 > 200,000
    with pytest.raises(InvalidInput, match="at most"):
        check_fits(load_process("mess3"), 10, replace(train, train_sequences=10**8))


def test_new_fields_validate_and_old_runs_read():
    assert TrainConfig(exact_eval=True).exact_eval == "every"  # format-1 runs stored booleans
    assert TrainConfig(exact_eval=False).exact_eval == "off"
    for bad, match in [
        ({"train_sequences": 0}, "--train-sequences must be an integer >= 1"),
        ({"train_sequences": True}, "--train-sequences"),
        ({"exact_eval": "sometimes"}, "exact_eval must be one of every, final, off"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda"),
    ]:
        with pytest.raises(InvalidInput, match=match):
            TrainConfig(**bad)


def test_resume_settings_and_clashes(tmp_path):
    from hmm import load_process
    from models.recipes import resolve_run, resume_clashes
    from models.training import run_config

    mess3 = load_process("mess3")
    model, train = resolve_run(mess3, None, arch="rnn", tokens=5000, seed=4, init_scale=0.5)
    stored = json.loads(json.dumps(run_config(mess3, model, train)))
    # resuming with no flags rebuilds exactly the run's settings
    again = resolve_run(mess3, None, stored)
    assert again == (model, train)
    assert resume_clashes(stored, json.loads(json.dumps(run_config(mess3, *again)))) == []

    def clashes(process=mess3, recipe=None, **flags):
        fresh = run_config(process, *resolve_run(process, recipe, stored, **flags))
        return resume_clashes(stored, json.loads(json.dumps(fresh)))

    assert clashes(seed=9) == ["--seed 9 (run has 4)"]
    assert clashes(init_scale=0.25) == ["--init-scale 0.25 (run has 0.5)"]
    assert clashes(device="cpu") == []  # where a run computes may change between segments
    assert "--config paper (run has default)" in clashes(recipe="paper")
    assert clashes(arch="transformer")[0] == "--arch transformer (run has rnn)"
    rrxor = load_process("rrxor")
    assert clashes(process=rrxor) == [f"process {rrxor.name} (run has {mess3.name})"]

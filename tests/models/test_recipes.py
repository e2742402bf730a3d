import json

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

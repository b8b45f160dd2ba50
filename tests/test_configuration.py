"""ConfigMixin, FrozenConfig, register_to_config and config files."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from pipeyard import ConfigMixin, FrozenConfig, register_to_config
from pipeyard.errors import (
    ConfigFileError,
    EntryNotFoundError,
    FrozenConfigError,
    MissingConfigKeyError,
    UnexpectedConfigKeyError,
)


class Ramp(ConfigMixin):
    config_name = "scheduler_config.json"
    ignore_for_config = ("verbose",)

    @register_to_config
    def __init__(self, steps: int, start: float = 0.0, stop: float = 1.0, shape=(1, 2), verbose=False, _cache=None):
        self.built_with = (steps, start, stop)


def test_init_arguments_and_defaults_become_the_config():
    ramp = Ramp(10, stop=2.0)
    assert dict(ramp.config) == {"steps": 10, "start": 0.0, "stop": 2.0, "shape": (1, 2)}
    assert ramp.config.stop == 2.0 and ramp.config["steps"] == 10
    assert ramp.built_with == (10, 0.0, 2.0)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.__setitem__("steps", 3),
        lambda c: setattr(c, "steps", 3),
        lambda c: c.pop("steps"),
        lambda c: c.popitem(),
        lambda c: c.update(steps=3),
        lambda c: c.setdefault("new", 1),
        lambda c: c.clear(),
        lambda c: c.__delitem__("steps"),
        lambda c: delattr(c, "steps"),
        lambda c: c.__ior__({"steps": 3}),
    ],
    ids=["setitem", "setattr", "pop", "popitem", "update", "setdefault", "clear", "delitem", "delattr", "ior"],
)
def test_every_way_of_mutating_the_config_raises(mutate):
    ramp = Ramp(10)
    with pytest.raises(FrozenConfigError, match="config is frozen") as info:
        mutate(ramp.config)
    assert isinstance(info.value, TypeError)
    assert ramp.config.steps == 10


def test_frozen_config_is_a_dict_that_pickles_copies_and_dumps():
    config = Ramp(4).config
    assert isinstance(config, dict) and isinstance(config, FrozenConfig)
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config and copy.copy(config) is config
    assert json.loads(json.dumps(config))["steps"] == 4
    with pytest.raises(AttributeError, match="no key 'nope'"):
        config.nope


def test_from_config_keeps_unknown_keys_as_hidden_config_and_drops_file_metadata():
    config = {"steps": 5, "solver_order": 2, "_class_name": "Other", "_diffusers_version": "0.30.0", "_private": 1}
    ramp = Ramp.from_config(config)
    assert ramp.built_with == (5, 0.0, 1.0)
    assert ramp.config.solver_order == 2 and ramp.config._private == 1
    assert "_class_name" not in ramp.config and "_diffusers_version" not in ramp.config
    again = Ramp.from_config(ramp.config)
    assert dict(again.config) == dict(ramp.config)


def test_from_config_accepts_an_object_and_overrides():
    ramp = Ramp.from_config(Ramp(3), stop=9.0)
    assert ramp.config.stop == 9.0 and ramp.config.steps == 3


def test_override_that_is_not_an_init_argument_is_refused():
    with pytest.raises(UnexpectedConfigKeyError, match="Ramp takes no config argument stpo") as info:
        Ramp.from_config({"steps": 1}, stpo=3)
    assert "stop" in info.value.valid


def test_missing_required_argument_names_it_and_the_class():
    with pytest.raises(MissingConfigKeyError, match="Ramp needs steps") as info:
        Ramp.from_config({"start": 1.0})
    assert info.value.keys == ["steps"] and info.value.class_name == "Ramp"
    assert isinstance(info.value, TypeError)


def test_save_and_load_round_trip_with_metadata(tmp_path):
    ramp = Ramp(7, shape=(3, 4))
    path = ramp.save_config(tmp_path)
    assert path.name == "scheduler_config.json"
    data = json.loads(path.read_text())
    assert data["_class_name"] == "Ramp" and "_pipeyard_version" in data
    assert data["shape"] == [3, 4]
    loaded = Ramp.from_pretrained(tmp_path)
    assert loaded.config.steps == 7 and loaded.config.shape == [3, 4]


def test_load_config_from_subfolder_reads_diffusers_files(tmp_path):
    folder = tmp_path / "scheduler"
    folder.mkdir()
    (folder / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "steps": 2})
    )
    assert Ramp.load_config(tmp_path, subfolder="scheduler")["_diffusers_version"] == "0.6.0"
    assert Ramp.from_pretrained(tmp_path, subfolder="scheduler").config.steps == 2


def test_config_file_that_is_not_json_names_file_line_and_column(tmp_path):
    (tmp_path / "scheduler_config.json").write_text('{\n  "steps": 3,\n  oops\n}')
    with pytest.raises(ConfigFileError) as info:
        Ramp.load_config(tmp_path)
    assert info.value.line == 3 and info.value.column == 3
    assert "scheduler_config.json:3:3" in str(info.value)


def test_config_file_holding_a_list_is_refused(tmp_path):
    (tmp_path / "scheduler_config.json").write_text("[1, 2]")
    with pytest.raises(ConfigFileError, match="expected a JSON object, found a list"):
        Ramp.load_config(tmp_path)


def test_missing_config_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(EntryNotFoundError, match="scheduler_config.json") as info:
        Ramp.load_config(tmp_path)
    assert isinstance(info.value, FileNotFoundError)


def test_register_to_config_needs_a_config_mixin():
    class NotConfigurable:
        @register_to_config
        def __init__(self, a=1):
            pass

    with pytest.raises(TypeError, match="needs a ConfigMixin"):
        NotConfigurable()


# --------------------------------------------------------------------------- JSON from a stranger


def test_config_nested_deeper_than_the_limit_is_refused_before_json_recurses(tmp_path):
    (tmp_path / "scheduler_config.json").write_text("[" * 100_000)
    with pytest.raises(ConfigFileError, match="nest deeper than 64 levels") as info:
        Ramp.load_config(tmp_path)
    assert info.value.path == str(tmp_path / "scheduler_config.json") and len(str(info.value)) < 300
    # 64 levels are fine, and brackets inside strings do not count
    deep = {"steps": 1, "nested": json.loads("[" * 63 + "]" * 63), "text": "[{" * 1000 + '\\"'}
    (tmp_path / "scheduler_config.json").write_text(json.dumps(deep))
    assert Ramp.load_config(tmp_path)["text"].startswith("[{[{")


def test_config_larger_than_the_limit_is_refused_unread(tmp_path):
    from pipeyard import fileio

    (tmp_path / "scheduler_config.json").write_text(json.dumps({"steps": 1, "pad": "x" * fileio.MAX_JSON_BYTES}))
    with pytest.raises(ConfigFileError, match=r"more than the 4,194,304 bytes pipeyard reads") as info:
        Ramp.load_config(tmp_path)
    assert "xxxx" not in str(info.value)


def test_config_giving_a_key_twice_is_refused_with_the_key_clipped(tmp_path):
    (tmp_path / "scheduler_config.json").write_text('{"steps": 1, "_class_name": "A", "_class_name": "B"}')
    with pytest.raises(ConfigFileError, match="key '_class_name' appears twice"):
        Ramp.load_config(tmp_path)
    long_key = "k" * 10_000
    (tmp_path / "scheduler_config.json").write_text(f'{{"a": {{"{long_key}": 1, "{long_key}": 2}}}}')
    with pytest.raises(ConfigFileError, match=r"\(\+9900 characters\)") as info:
        Ramp.load_config(tmp_path)
    assert len(str(info.value)) < 400


def test_config_number_python_cannot_convert_is_a_config_file_error(tmp_path):
    (tmp_path / "scheduler_config.json").write_text('{"steps": ' + "9" * 5000 + "}")
    with pytest.raises(ConfigFileError, match="scheduler_config.json is not valid") as info:
        Ramp.load_config(tmp_path)
    assert len(str(info.value)) < 400


def test_model_index_nested_too_deep_is_a_config_file_error(tmp_path):
    from pipeyard import DiffusionPipeline

    (tmp_path / "model_index.json").write_text('{"a": ' + "[" * 100_000)
    with pytest.raises(ConfigFileError, match="model_index.json is not valid: arrays and objects nest deeper"):
        DiffusionPipeline.from_pretrained(tmp_path)


def test_failed_atomic_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    from pipeyard import fileio

    target = tmp_path / "sub" / "config.json"
    fileio.write_json_atomic(target, {"v": 1})  # creates the folder
    with pytest.raises(TypeError), fileio.atomic_replace(target) as tmp:
        tmp.write_text("half")
        raise TypeError("the writer failed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["config.json"]


# --------------------------------------------------------------------------- diffusers-style use


def test_installing_a_frozen_dict_as_internal_dict_changes_the_config() -> None:
    from pipeyard.configuration import FrozenDict

    ramp = Ramp(steps=3)
    new_config = dict(ramp.config)
    new_config["stop"] = 5.0
    ramp._internal_dict = FrozenDict(new_config)
    assert ramp.config.stop == 5.0 and ramp.config["steps"] == 3
    assert isinstance(ramp.config, FrozenConfig)
    with pytest.raises(FrozenConfigError):
        ramp.config.stop = 1.0
    assert Ramp.from_config(ramp.config).config.stop == 5.0


def test_a_plain_dict_installed_as_internal_dict_is_frozen_on_read() -> None:
    ramp = Ramp(steps=3)
    ramp._internal_dict = {**ramp.config, "start": 0.5}
    assert ramp.config.start == 0.5
    with pytest.raises(FrozenConfigError):
        ramp.config["start"] = 1.0


def test_reading_a_config_key_as_an_attribute_works_with_a_deprecation_warning() -> None:
    from pipeyard.errors import PipeyardDeprecationWarning

    ramp = Ramp(steps=3, stop=2.0)
    with pytest.warns(PipeyardDeprecationWarning, match=r"obj\.config\.stop"):
        assert ramp.stop == 2.0
    with pytest.raises(AttributeError, match="'Ramp' object has no attribute 'nothing'"):
        ramp.nothing  # noqa: B018


def test_an_object_without_config_says_how_to_give_it_one() -> None:
    class Bare(ConfigMixin):
        pass

    with pytest.raises(AttributeError, match="register_to_config"):
        Bare().config  # noqa: B018


def test_from_config_returns_unused_keys_when_asked_as_diffusers_does() -> None:
    ramp, unused = Ramp.from_config({"steps": 2, "other_family_option": 1}, return_unused_kwargs=True)
    assert isinstance(ramp, Ramp) and ramp.config.steps == 2
    assert unused == {"other_family_option": 1}


def test_a_class_defined_the_diffusers_way_records_saves_and_reloads_its_config(tmp_path) -> None:
    from pipeyard.configuration import ConfigMixin as Mixin
    from pipeyard.configuration import register_to_config as register

    class Blend(Mixin):
        config_name = "blend_config.json"

        @register
        def __init__(self, num_train_timesteps: int = 1000, alpha: float = 0.5):
            self.num_inference_steps = None

    blend = Blend(alpha=0.25)
    blend.register_to_config(extra="kept")
    assert (blend.config.num_train_timesteps, blend.config.alpha, blend.config.extra) == (1000, 0.25, "kept")
    path = blend.save_config(tmp_path)
    assert path.name == "blend_config.json"
    again = Blend.from_config(Blend.load_config(tmp_path))
    assert dict(again.config) == dict(blend.config)

"""Scheduler interface: exports, compatibles, config files both ways, add_noise, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import pipeyard
from pipeyard import errors
from pipeyard.schedulers.common import SD_FAMILY

diffusers = pytest.importorskip("diffusers")

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*__array_wrap__ must accept context:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn.t accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in version 1.0.0:FutureWarning"),
]

#: A Stable Diffusion 1.5 scheduler config as written by an old diffusers (PNDM, unknown keys).
SD15_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


@pytest.mark.parametrize("name", SD_FAMILY)
def test_every_scheduler_is_exported_from_pipeyard(name: str) -> None:
    cls = getattr(pipeyard, name)
    assert cls is getattr(pipeyard.schedulers, name)
    assert name in pipeyard.__all__
    assert cls.config_name == "scheduler_config.json"


@pytest.mark.parametrize("name", SD_FAMILY)
def test_compatibles_lists_all_thirteen_and_each_builds_from_this_config(name: str) -> None:
    scheduler = getattr(pipeyard, name).from_config(SD15_CONFIG)
    assert {c.__name__ for c in scheduler.compatibles} == set(SD_FAMILY)
    for other in scheduler.compatibles:
        swapped = other.from_config(scheduler.config)
        swapped.set_timesteps(5)
        assert swapped.config.beta_schedule == "scaled_linear"
        assert swapped.config["skip_prk_steps"] is True  # a PNDM key, kept as hidden config


@pytest.mark.parametrize("name", SD_FAMILY)
def test_config_saved_by_diffusers_loads_and_ours_loads_in_diffusers(name: str, tmp_path: Any) -> None:
    theirs = getattr(diffusers, name).from_config(SD15_CONFIG)
    theirs.save_pretrained(tmp_path / "d" / "scheduler")
    ours = getattr(pipeyard, name).from_pretrained(tmp_path / "d", subfolder="scheduler")
    for key, value in theirs.config.items():
        if not key.startswith("_") and key in ours.config:
            assert ours.config[key] == value or (value in ([], ()) and list(ours.config[key]) == [])
    ours.save_pretrained(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == name
    back = getattr(diffusers, name).from_pretrained(tmp_path / "p")
    for a, b in ((ours, back),):
        a.set_timesteps(12)
        b.set_timesteps(12)
        torch.testing.assert_close(a.timesteps, b.timesteps)


@pytest.mark.parametrize("name", SD_FAMILY)
def test_add_noise_matches_diffusers(name: str) -> None:
    ours, theirs = getattr(pipeyard, name).from_config(SD15_CONFIG), getattr(diffusers, name).from_config(SD15_CONFIG)
    ours.set_timesteps(20)
    theirs.set_timesteps(20)
    x0 = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    timesteps = theirs.timesteps[[1, 4, 7]]
    torch.testing.assert_close(ours.add_noise(x0, noise, timesteps), theirs.add_noise(x0, noise, timesteps))


@pytest.mark.parametrize("name", SD_FAMILY)
def test_return_dict_false_gives_the_same_tuple_shape_as_diffusers(name: str) -> None:
    ours, theirs = getattr(pipeyard, name).from_config(SD15_CONFIG), getattr(diffusers, name).from_config(SD15_CONFIG)
    lengths = []
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(10)
        t = scheduler.timesteps[0]
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        out = scheduler.step(torch.zeros_like(x), t, scheduler.scale_model_input(x, t), return_dict=False)
        lengths.append(len(out))
    assert lengths[0] == lengths[1]


def test_unknown_keys_from_any_diffusers_version_are_kept() -> None:
    config = {**SD15_CONFIG, "some_future_option": 3, "_use_default_values": ["x"]}
    scheduler = pipeyard.EulerDiscreteScheduler.from_config(config)
    assert scheduler.config["some_future_option"] == 3
    assert pipeyard.DDIMScheduler.from_config(scheduler.config).config["some_future_option"] == 3


# --------------------------------------------------------------------------- bad input


#: schedulers whose step() works before set_timesteps, as in diffusers (test_schedulers_diffusers_behaviour)
READY_AT_INIT = ("DDPMScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                 "LMSDiscreteScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")


@pytest.mark.parametrize("name", [n for n in SD_FAMILY if n not in READY_AT_INIT])
def test_step_before_set_timesteps_is_a_typed_error(name: str) -> None:
    scheduler = getattr(pipeyard, name)()
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(errors.SchedulerNotReadyError, match="set_timesteps"):
        scheduler.step(x, 999, x)


@pytest.mark.parametrize("name", SD_FAMILY)
@pytest.mark.parametrize("steps", [0, -3, 1001, 2.5])
def test_num_inference_steps_out_of_range_is_a_typed_error(name: str, steps: Any) -> None:
    with pytest.raises(errors.InferenceStepsError, match=rf"num_inference_steps={steps!r}.*1 to num_train_timesteps=1000") as info:
        getattr(pipeyard, name)().set_timesteps(steps)
    assert info.value.value == steps
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", SD_FAMILY)
@pytest.mark.parametrize(("key", "value"), [("beta_schedule", "cosine"), ("prediction_type", "noise")])
def test_unknown_option_values_list_the_valid_ones(name: str, key: str, value: str) -> None:
    with pytest.raises(errors.SchedulerConfigError) as info:
        getattr(pipeyard, name)(**{key: value})
    message = str(info.value)
    assert repr(value) in message and key in message and "'epsilon'" in message or "'linear'" in message
    assert info.value.key == key and info.value.value == value and info.value.valid


@pytest.mark.parametrize("name", sorted(set(SD_FAMILY) - {"DPMSolverSinglestepScheduler"}))
def test_unknown_timestep_spacing_lists_the_valid_ones(name: str) -> None:
    with pytest.raises(errors.SchedulerConfigError, match="'linspace', 'leading', 'trailing'"):
        getattr(pipeyard, name)(timestep_spacing="uniform")


@pytest.mark.parametrize("name", ["DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"])
def test_unknown_algorithm_type_lists_the_valid_ones(name: str) -> None:
    with pytest.raises(errors.SchedulerConfigError, match="algorithm_type='fast'.*'dpmsolver\\+\\+'"):
        getattr(pipeyard, name)(algorithm_type="fast")


@pytest.mark.parametrize("name", SD_FAMILY)
def test_timestep_not_in_schedule_is_a_typed_error(name: str) -> None:
    scheduler = getattr(pipeyard, name).from_config(SD15_CONFIG)
    scheduler.set_timesteps(10)
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(errors.TimestepNotInScheduleError, match="timestep 3 is not in the schedule") as info:
        scheduler.step(x, 3, x)
    assert info.value.timestep == 3
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize("name", SD_FAMILY)
def test_model_output_of_another_shape_is_a_typed_error(name: str) -> None:
    scheduler = getattr(pipeyard, name).from_config(SD15_CONFIG)
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[0]
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(errors.ModelOutputShapeError, match=r"\(1, 4, 4, 4\).*\(1, 4, 8, 8\)") as info:
        scheduler.step(torch.zeros(1, 4, 4, 4), t, scheduler.scale_model_input(x, t))
    assert info.value.got == (1, 4, 4, 4)


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("EulerDiscreteScheduler", {"use_beta_sigmas": True}),
        ("DPMSolverMultistepScheduler", {"use_lu_lambdas": True}),
        ("UniPCMultistepScheduler", {"use_flow_sigmas": True}),
        ("DEISMultistepScheduler", {"use_dynamic_shifting": True}),
    ],
)
def test_unimplemented_options_are_refused_unless_default(name: str, option: dict[str, Any]) -> None:
    [(key, value)] = option.items()
    with pytest.raises(errors.UnsupportedSchedulerOptionError, match=f"{key}={value!r} is not implemented"):
        getattr(pipeyard, name)(**option)
    assert getattr(pipeyard, name)(**{key: False}).config[key] is False


def test_dpmsolver_with_a_zero_final_sigma_asks_for_sigma_min() -> None:
    with pytest.raises(errors.SchedulerConfigError, match="final_sigmas_type='zero'.*'sigma_min'"):
        pipeyard.DPMSolverMultistepScheduler(algorithm_type="dpmsolver")


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "LMSDiscreteScheduler", "DPMSolverMultistepScheduler", "DEISMultistepScheduler"])
def test_karras_and_exponential_sigmas_together_are_refused(name: str) -> None:
    with pytest.raises(errors.SchedulerConfigError, match=f"{name} does not support use_exponential_sigmas=True"):
        scheduler = getattr(pipeyard, name)(use_karras_sigmas=True, use_exponential_sigmas=True)
        scheduler.set_timesteps(10)

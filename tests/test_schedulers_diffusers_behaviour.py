"""Scheduler behaviour that diffusers defines and pipelines written for diffusers rely on.

diffusers (a test-only dependency) is the oracle: the same calls on the same configs give the
same numbers and the same call signatures.
"""

from __future__ import annotations

import inspect
import re
import warnings
from typing import Any

import pytest
import torch

import pipeyard
from pipeyard import errors
from pipeyard.configuration import ConfigMixin, FrozenDict, register_to_config
from pipeyard.outputs import BaseOutput
from pipeyard.schedulers import KarrasDiffusionSchedulers, SchedulerMixin
from pipeyard.schedulers.common import SD_FAMILY

diffusers = pytest.importorskip("diffusers")

pytestmark = [
    pytest.mark.filterwarnings("ignore:.*__array_wrap__ must accept context:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn.t accept a copy keyword:DeprecationWarning"),
]

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def _pair(name: str, **config: Any) -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' own notices about some configs
        return getattr(pipeyard, name)(**config), getattr(diffusers, name)(**config)


# --------------------------------------------------------------------------- DDPM before set_timesteps


@pytest.mark.parametrize("timestep", [1, 0, 500, 999, torch.tensor(7)])
@pytest.mark.parametrize(
    "config",
    [{}, {"variance_type": "fixed_large"}, {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}],
)
def test_ddpm_step_before_set_timesteps_goes_to_t_minus_one_as_diffusers(config: dict, timestep: Any) -> None:
    ours, theirs = _pair("DDPMScheduler", **config)
    sample = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model_output = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    a = ours.step(model_output, timestep, sample, generator=torch.Generator().manual_seed(2))
    b = theirs.step(model_output, timestep, sample, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.prev_sample, b.prev_sample, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.pred_original_sample, b.pred_original_sample, rtol=0, atol=1e-6)
    assert ours.previous_timestep(timestep) == int(theirs.previous_timestep(timestep))


def test_the_tutorial_one_step_pipeline_pattern_runs_on_a_fresh_ddpm_scheduler() -> None:
    scheduler = pipeyard.DDPMScheduler()
    image = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    prev = scheduler.step(image * 0.1, 1, image).prev_sample
    assert prev.shape == image.shape and torch.isfinite(prev).all()


@pytest.mark.parametrize("timestep", [1000, -1, 2.5, "1"])
def test_ddpm_step_before_set_timesteps_refuses_a_timestep_outside_training(timestep: Any) -> None:
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(errors.TimestepNotInScheduleError) as info:
        pipeyard.DDPMScheduler().step(x, timestep, x)
    assert repr(timestep) in str(info.value) and "999, 998" in str(info.value)


def test_ddpm_uses_its_inference_schedule_once_set() -> None:
    ours, theirs = _pair("DDPMScheduler")
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert ours.previous_timestep(900) == int(theirs.previous_timestep(900)) == 800


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("name", SD_FAMILY)
def test_step_offers_exactly_the_keywords_of_diffusers(name: str) -> None:
    """Pipelines pass ``eta`` / ``generator`` after inspecting ``step``: both must see the same."""
    ours, theirs = _pair(name)
    for method in ("step", "scale_model_input", "add_noise"):
        ours_params = list(inspect.signature(getattr(ours, method)).parameters)
        theirs_params = list(inspect.signature(getattr(theirs, method)).parameters)
        assert ours_params == theirs_params, (name, method)


@pytest.mark.parametrize("name", SD_FAMILY)
def test_prepare_extra_step_kwargs_pattern_passes_what_diffusers_would(name: str) -> None:
    ours, theirs = _pair(name, **SD_BETAS)
    ours.set_timesteps(4)
    theirs.set_timesteps(4)

    def extra_step_kwargs(scheduler: Any) -> dict[str, Any]:
        accepted = set(inspect.signature(scheduler.step).parameters)
        kwargs: dict[str, Any] = {}
        if "eta" in accepted:
            kwargs["eta"] = 0.0
        if "generator" in accepted:
            kwargs["generator"] = torch.Generator().manual_seed(5)
        return kwargs

    assert extra_step_kwargs(ours).keys() == extra_step_kwargs(theirs).keys()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * ours.init_noise_sigma
    t = ours.timesteps[0]
    out = ours.step(torch.zeros_like(x), t, ours.scale_model_input(x, t), **extra_step_kwargs(ours))
    assert out.prev_sample.shape == x.shape


@pytest.mark.parametrize("name", SD_FAMILY)
def test_timesteps_exist_before_set_timesteps(name: str) -> None:
    ours, theirs = _pair(name)
    assert isinstance(ours.timesteps, torch.Tensor)
    if theirs.timesteps is not None:
        torch.testing.assert_close(ours.timesteps, theirs.timesteps, check_dtype=False)


# --------------------------------------------------------------------------- config patching


@pytest.mark.parametrize("name", SD_FAMILY)
def test_a_config_patched_through_frozen_dict_drives_sampling_as_in_diffusers(name: str) -> None:
    """The pattern of older pipelines: fix steps_offset / clip_sample by installing a new config."""
    from diffusers.configuration_utils import FrozenDict as TheirFrozenDict

    samples = []
    for scheduler, frozen in zip(_pair(name, **SD_BETAS), (FrozenDict, TheirFrozenDict)):
        new_config = dict(scheduler.config)
        new_config["steps_offset"] = 1
        if "clip_sample" in new_config:
            new_config["clip_sample"] = False
        scheduler._internal_dict = frozen(new_config)
        assert scheduler.config.steps_offset == 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scheduler.set_timesteps(5)
        x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_output = torch.sin(3 * scheduler.scale_model_input(x, t))
            extra = {"generator": torch.Generator().manual_seed(1)} if "generator" in inspect.signature(scheduler.step).parameters else {}
            x = scheduler.step(model_output, t, x, **extra).prev_sample
        samples.append((scheduler.timesteps.tolist(), x))
    assert samples[0][0] == samples[1][0]
    torch.testing.assert_close(samples[0][1], samples[1][1], rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- classes defined in pipeline files


@pytest.mark.filterwarnings("error")
def test_a_scheduler_defined_the_diffusers_way_without_init_works() -> None:
    class AlphaBlendScheduler(SchedulerMixin, ConfigMixin):
        def set_timesteps(self, num_inference_steps: int) -> None:
            self.num_inference_steps = num_inference_steps

        def step(self, model_output: torch.Tensor, timestep: int, x: torch.Tensor) -> torch.Tensor:
            if self.num_inference_steps is None:
                raise ValueError("set_timesteps first")
            return x + model_output / self.num_inference_steps

    scheduler = AlphaBlendScheduler()
    assert scheduler and scheduler.num_inference_steps is None
    assert AlphaBlendScheduler.config_name == "scheduler_config.json"
    scheduler.set_timesteps(4)
    assert torch.equal(scheduler.step(torch.ones(1), 0, torch.zeros(1)), torch.full((1,), 0.25))


def test_a_scheduler_defined_with_register_to_config_builds_saves_and_reloads(tmp_path) -> None:
    import dataclasses

    @dataclasses.dataclass
    class BlendOutput(BaseOutput):
        prev_sample: torch.Tensor
        denoised: torch.Tensor | None = None

    class BlendScheduler(SchedulerMixin, ConfigMixin):
        order = 1

        @register_to_config
        def __init__(self, num_train_timesteps: int = 1000, beta_schedule: str = "linear", steps_offset: int = 0):
            self.num_inference_steps = None
            self.timesteps = torch.arange(num_train_timesteps - 1, -1, -1)

        def set_timesteps(self, num_inference_steps: int, device: Any = None) -> None:
            self.num_inference_steps = num_inference_steps
            step = self.config.num_train_timesteps // num_inference_steps
            self.timesteps = torch.arange(num_inference_steps - 1, -1, -1) * step + self.config.steps_offset
            self.step_index = 0

        def step(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor, return_dict: bool = True):
            self.step_index += 1
            out = BlendOutput(prev_sample=sample - model_output, denoised=model_output)
            return out if return_dict else out.to_tuple()

        def __len__(self) -> int:
            return self.config.num_train_timesteps

    scheduler = BlendScheduler(beta_schedule="scaled_linear")
    assert scheduler.config.beta_schedule == "scaled_linear" and len(scheduler) == 1000
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [750, 500, 250, 0]
    out = scheduler.step(torch.ones(1), 750, torch.zeros(1))
    assert scheduler.step_index == 1 and out[0].item() == -1.0 and out["denoised"].item() == 1.0
    scheduler.save_config(tmp_path)
    again = BlendScheduler.from_pretrained(tmp_path, steps_offset=1)
    assert (again.config.beta_schedule, again.config.steps_offset) == ("scaled_linear", 1)


def test_karras_diffusion_schedulers_names_the_same_members_as_diffusers() -> None:
    from diffusers.schedulers import KarrasDiffusionSchedulers as Theirs

    assert [(e.name, e.value) for e in KarrasDiffusionSchedulers] == [(e.name, e.value) for e in Theirs]


# --------------------------------------------------------------------------- custom timesteps


def test_ddpm_custom_timesteps_sample_as_diffusers() -> None:
    """``retrieve_timesteps(scheduler, timesteps=[...])`` checks for this keyword, then passes it."""
    timesteps = [999, 800, 650, 400, 120, 5]
    results = []
    for scheduler in _pair("DDPMScheduler"):
        assert "timesteps" in inspect.signature(scheduler.set_timesteps).parameters
        scheduler.set_timesteps(timesteps=timesteps)
        x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
        generator = torch.Generator().manual_seed(1)
        for t in scheduler.timesteps:
            x = scheduler.step(torch.sin(3 * x), t, x, generator=generator).prev_sample
        results.append((scheduler.timesteps.tolist(), x, int(scheduler.previous_timestep(400))))
    assert results[0][0] == results[1][0] == timesteps
    assert results[0][2] == results[1][2] == 120
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_inference_steps": 4, "timesteps": [999, 500]}, "both"),
        ({}, "neither"),
        ({"timesteps": [500, 999]}, "not strictly descending"),
        ({"timesteps": [1000, 10]}, "training range 0 to 999"),
        ({"timesteps": [10, -1]}, "training range 0 to 999"),
    ],
)
def test_ddpm_unusable_custom_timesteps_are_typed_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(errors.ScheduleRequestError, match=re.escape(words)) as info:
        pipeyard.DDPMScheduler().set_timesteps(**kwargs)
    assert isinstance(info.value, ValueError) and "DDPMScheduler.set_timesteps" in str(info.value)


# --------------------------------------------------------------------------- k-diffusion samplers before set_timesteps

READY_AT_INIT = ("HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "LMSDiscreteScheduler")


def _noise(seed: int) -> torch.Tensor:
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("timestep", [999, 1, torch.tensor(500.0)])
@pytest.mark.parametrize("name", READY_AT_INIT)
def test_k_samplers_step_before_set_timesteps_on_the_training_schedule_as_diffusers(name: str, timestep: Any) -> None:
    ours, theirs = _pair(name)
    assert ours.num_inference_steps == theirs.num_inference_steps == 1000
    torch.testing.assert_close(ours.sigmas, theirs.sigmas)
    assert ours.init_noise_sigma == pytest.approx(float(theirs.init_noise_sigma))
    x, eps = _noise(0), _noise(1)
    kwargs = lambda: {"generator": torch.Generator().manual_seed(2)} if "Ancestral" in name else {}  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' LMS warns that scale_model_input was not called
        expected = theirs.step(eps, timestep, x, **kwargs()).prev_sample
    torch.testing.assert_close(ours.step(eps, timestep, x, **kwargs()).prev_sample, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("timestep", [999.0, torch.tensor(998.0), torch.tensor(0.0)])
@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"])
def test_euler_samplers_step_before_set_timesteps_on_the_training_sigmas_as_diffusers(name: str, timestep: Any) -> None:
    ours, theirs = _pair(name)
    assert ours.num_inference_steps is None and theirs.num_inference_steps is None
    x, eps = _noise(0), _noise(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers warns that scale_model_input was not called
        expected = theirs.step(eps, timestep, x, generator=torch.Generator().manual_seed(2)).prev_sample
    got = ours.step(eps, timestep, x, generator=torch.Generator().manual_seed(2)).prev_sample
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- custom schedules (retrieve_timesteps)

CUSTOM_SCHEDULES = {
    "euler-timesteps": ("EulerDiscreteScheduler", {}, {"timesteps": [999, 800, 500, 200, 10]}),
    "euler-timesteps-sigma-min": ("EulerDiscreteScheduler", {"final_sigmas_type": "sigma_min"}, {"timesteps": [999, 500, 10]}),
    "euler-sigmas": ("EulerDiscreteScheduler", {}, {"sigmas": [14.6, 8.0, 3.0, 1.0, 0.2, 0.0]}),
    "heun-timesteps": ("HeunDiscreteScheduler", {}, {"timesteps": [999, 700, 400, 100]}),
    "heun-num-train-timesteps": ("HeunDiscreteScheduler", {"timestep_spacing": "leading"},
                                 {"num_inference_steps": 4, "num_train_timesteps": 500}),
    "kdpm2-num-train-timesteps": ("KDPM2DiscreteScheduler", {}, {"num_inference_steps": 4, "num_train_timesteps": 600}),
    "kdpm2a-num-train-timesteps": ("KDPM2AncestralDiscreteScheduler", {"timestep_spacing": "trailing"},
                                   {"num_inference_steps": 3, "num_train_timesteps": 600}),
    "dpm-multistep-timesteps": ("DPMSolverMultistepScheduler", {}, {"timesteps": [999, 800, 500, 200, 10]}),
    "dpm-multistep-sde-timesteps": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"},
                                    {"timesteps": [999, 700, 300, 1]}),
    "dpm-singlestep-timesteps": ("DPMSolverSinglestepScheduler", {"solver_order": 3},
                                 {"timesteps": [999, 800, 500, 200, 100, 10]}),
}


def _sample(scheduler: Any, **schedule: Any) -> torch.Tensor:
    scheduler.set_timesteps(**schedule)
    sample = _noise(0) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        eps = torch.sin(scheduler.scale_model_input(sample, t) * (1 + i))
        extra = {"generator": torch.Generator().manual_seed(i)} if "generator" in inspect.signature(scheduler.step).parameters else {}
        sample = scheduler.step(eps, t, sample, **extra).prev_sample
    return sample


@pytest.mark.parametrize("case", list(CUSTOM_SCHEDULES))
def test_custom_schedules_sample_as_diffusers(case: str) -> None:
    name, config, schedule = CUSTOM_SCHEDULES[case]
    ours, theirs = _pair(name, **config)
    got, expected = _sample(ours, **schedule), _sample(theirs, **schedule)
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, check_dtype=False, rtol=0, atol=0)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, rtol=0, atol=0)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["EulerDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler",
                                  "DPMSolverSinglestepScheduler"])
def test_retrieve_timesteps_passes_custom_timesteps_to_every_scheduler_that_takes_them(name: str) -> None:
    from pipeyard.pipelines.sampling import retrieve_timesteps

    timesteps, steps = retrieve_timesteps(getattr(pipeyard, name)(), timesteps=[999, 600, 300, 50])
    assert steps == len(timesteps) and float(timesteps[0]) == 999.0


REFUSED_SCHEDULES = {
    "neither": ("EulerDiscreteScheduler", {}, {}, "got none of num_inference_steps or timesteps or sigmas"),
    "both": ("EulerDiscreteScheduler", {}, {"num_inference_steps": 4, "timesteps": [999, 10]},
             "got num_inference_steps and timesteps"),
    "timesteps-and-sigmas": ("EulerDiscreteScheduler", {}, {"timesteps": [999, 10], "sigmas": [3.0, 0.0]},
                             "got timesteps and sigmas"),
    "karras-with-timesteps": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, {"timesteps": [999, 10]},
                              "custom timesteps cannot be used with use_karras_sigmas=True"),
    "heun-karras-with-timesteps": ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, {"timesteps": [999, 10]},
                                   "custom timesteps cannot be used with use_karras_sigmas=True"),
    "dpm-karras-with-timesteps": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True},
                                  {"timesteps": [999, 10]}, "custom timesteps cannot be used with use_karras_sigmas"),
    "dpm-mu": ("DPMSolverMultistepScheduler", {}, {"num_inference_steps": 4, "mu": 0.5}, "mu=0.5 applies only to flow"),
    "unipc-sigmas": ("UniPCMultistepScheduler", {}, {"num_inference_steps": 4, "sigmas": [1.0, 0.5]},
                     "sigmas=[1.0, 0.5] applies only to flow"),
    "empty-timesteps": ("EulerDiscreteScheduler", {}, {"timesteps": []}, "timesteps=[] is not a non-empty list"),
}


@pytest.mark.parametrize("case", list(REFUSED_SCHEDULES))
def test_schedules_diffusers_refuses_are_typed_errors(case: str) -> None:
    name, config, schedule, words = REFUSED_SCHEDULES[case]
    ours, theirs = _pair(name, **config)
    with pytest.raises(errors.ScheduleRequestError, match=re.escape(words)) as info:
        ours.set_timesteps(**schedule)
    assert isinstance(info.value, ValueError) and name in str(info.value)
    if case == "empty-timesteps":
        return  # diffusers installs an empty schedule; sampling then does nothing
    with pytest.raises((ValueError, AssertionError)):  # diffusers refuses too (some by assert)
        theirs.set_timesteps(**schedule)

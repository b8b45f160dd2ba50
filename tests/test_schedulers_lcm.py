"""LCMScheduler against diffusers' (the oracle): schedules, sampling loops, errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch

from pipeyard import errors
from pipeyard.schedulers import LCMScheduler, LCMSchedulerOutput

diffusers = pytest.importorskip("diffusers")


def _sample(scheduler: Any, steps: int | None, set_kwargs: dict[str, Any]) -> tuple[list[int], torch.Tensor]:
    scheduler.set_timesteps(steps, **set_kwargs)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for t in scheduler.timesteps:
        model_output = torch.sin(3 * scheduler.scale_model_input(x, t))
        x = scheduler.step(model_output, t, x, generator=generator).prev_sample
    return scheduler.timesteps.tolist(), x


@pytest.mark.parametrize(
    ("config", "steps", "set_kwargs"),
    [
        ({}, 4, {}),
        ({}, 1, {}),
        ({"prediction_type": "v_prediction", "clip_sample": True}, 6, {"original_inference_steps": 30}),
        ({"set_alpha_to_one": False, "thresholding": True, "beta_schedule": "linear"}, 3, {"strength": 0.6}),
        ({"prediction_type": "sample", "timestep_scaling": 5.0, "beta_schedule": "squaredcos_cap_v2"}, 8, {}),
    ],
)
def test_lcm_sampling_equals_diffusers(config: dict, steps: int, set_kwargs: dict) -> None:
    ours_t, ours_x = _sample(LCMScheduler(**config), steps, set_kwargs)
    theirs_t, theirs_x = _sample(diffusers.LCMScheduler(**config), steps, set_kwargs)
    assert ours_t == theirs_t
    torch.testing.assert_close(ours_x, theirs_x, rtol=0, atol=1e-5)


def test_lcm_custom_timesteps_with_strength_keep_the_tail_as_diffusers(caplog: pytest.LogCaptureFixture) -> None:
    ours, theirs = LCMScheduler(), diffusers.LCMScheduler()
    with caplog.at_level(logging.WARNING):
        for scheduler in (ours, theirs):
            scheduler.set_timesteps(timesteps=[999, 759, 499, 259], strength=0.5)
    assert ours.timesteps.tolist() == theirs.timesteps.tolist() == [499, 259]
    assert ours.num_inference_steps == theirs.num_inference_steps == 4
    assert ours.custom_timesteps


def test_lcm_step_returns_denoised_and_add_noise_matches_diffusers() -> None:
    ours, theirs = LCMScheduler(), diffusers.LCMScheduler()
    ours.set_timesteps(2)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = ours.step(x, ours.timesteps[0], x, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, LCMSchedulerOutput) and out.denoised is not None
    assert ours.step_index == 1
    x0, noise, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.tensor([999, 10])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), theirs.add_noise(x0, noise, t))
    assert ours.config.original_inference_steps == 50 and ours.init_noise_sigma == 1.0


def test_lcm_more_steps_than_the_distillation_grid_is_a_typed_error() -> None:
    with pytest.raises(errors.ScheduleRequestError) as info:
        LCMScheduler().set_timesteps(60)
    assert isinstance(info.value, ValueError)
    assert "num_inference_steps=60" in str(info.value) and "at most 50" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({}, "neither"),
        ({"num_inference_steps": 4, "timesteps": [999, 499]}, "both"),
        ({"timesteps": [499, 999]}, "not descending"),
        ({"timesteps": [1000, 499]}, "start below num_train_timesteps=1000"),
        ({"num_inference_steps": 4, "original_inference_steps": 2000}, "original_inference_steps=2000"),
    ],
)
def test_lcm_unusable_set_timesteps_arguments_are_typed_errors(kwargs: dict, words: str) -> None:
    with pytest.raises(errors.ScheduleRequestError, match=words) as info:
        LCMScheduler().set_timesteps(**kwargs)
    assert "LCMScheduler.set_timesteps" in str(info.value)


def test_lcm_step_before_set_timesteps_is_a_typed_error() -> None:
    x = torch.zeros(1, 4, 8, 8)
    with pytest.raises(errors.SchedulerNotReadyError, match="set_timesteps"):
        LCMScheduler().step(x, 999, x)


def test_lcm_is_compatible_only_with_itself_as_in_diffusers() -> None:
    assert LCMScheduler().compatibles == [LCMScheduler]
    assert [c.__name__ for c in diffusers.LCMScheduler().compatibles] == ["LCMScheduler"]

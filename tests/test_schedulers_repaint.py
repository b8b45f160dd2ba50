"""RePaintScheduler against diffusers' (the oracle): resampling schedules and inpainting loops."""

from __future__ import annotations

import pytest
import torch

from pipeyard import errors
from pipeyard.schedulers import RePaintScheduler, RePaintSchedulerOutput

diffusers = pytest.importorskip("diffusers")


def _inpaint(scheduler, steps: int, jump_length: int, jump_n_sample: int) -> tuple[list[int], torch.Tensor]:
    """The RePaint pipeline's loop: step going down, undo_step on each jump back up."""
    scheduler.set_timesteps(steps, jump_length=jump_length, jump_n_sample=jump_n_sample)
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    mask = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(6)) > 0.5).float()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    t_last = scheduler.timesteps[0] + 1
    for t in scheduler.timesteps:
        if t < t_last:
            x = scheduler.step(torch.sin(3 * x), t, x, image, mask, generator).prev_sample
        else:
            x = scheduler.undo_step(x, t_last, generator)
        t_last = t
    return scheduler.timesteps.tolist(), x


@pytest.mark.parametrize(
    ("config", "steps", "jump_length", "jump_n_sample"),
    [
        ({}, 20, 5, 3),
        ({"eta": 0.5}, 30, 10, 2),
        ({"eta": 1.0, "clip_sample": False, "beta_schedule": "squaredcos_cap_v2"}, 12, 3, 4),
        ({"beta_schedule": "sigmoid"}, 2000, 10, 1),  # more steps than training: lowered to 1000
    ],
)
def test_repaint_inpainting_equals_diffusers(config: dict, steps: int, jump_length: int, jump_n_sample: int) -> None:
    ours_t, ours_x = _inpaint(RePaintScheduler(**config), steps, jump_length, jump_n_sample)
    theirs_t, theirs_x = _inpaint(diffusers.RePaintScheduler(**config), steps, jump_length, jump_n_sample)
    assert ours_t == theirs_t
    torch.testing.assert_close(ours_x, theirs_x, rtol=0, atol=1e-5)


def test_repaint_step_returns_both_samples_and_keeps_the_known_region_noised_image() -> None:
    scheduler = RePaintScheduler()
    scheduler.set_timesteps(10, jump_length=1, jump_n_sample=1)
    image, ones = torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4)
    out = scheduler.step(torch.zeros(1, 3, 4, 4), 0, torch.zeros(1, 3, 4, 4), image, ones)
    assert isinstance(out, RePaintSchedulerOutput)
    torch.testing.assert_close(out.prev_sample, image)  # t = 0: the known part is the image itself
    assert len(out.to_tuple()) == 2


def test_repaint_step_before_set_timesteps_is_a_typed_error() -> None:
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(errors.SchedulerNotReadyError, match="set_timesteps"):
        RePaintScheduler().step(x, 10, x, x, x)
    with pytest.raises(errors.SchedulerNotReadyError):
        RePaintScheduler().undo_step(x, 10)


def test_repaint_refuses_an_unknown_beta_schedule_listing_the_valid_ones() -> None:
    with pytest.raises(errors.SchedulerConfigError, match="sigmoid"):
        RePaintScheduler(beta_schedule="laplace")

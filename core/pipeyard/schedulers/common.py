"""What every scheduler shares: the mixin, the output, noise schedules and validation.

Notation used across the scheduler modules (Karras et al. 2022 and Lu et al. 2022):

==================  ==================================================================
``alpha_bar[t]``    cumulative product of ``1 - beta`` up to training step ``t``
``sigma``           noise level of the variance-exploding view, ``sqrt((1 - ab) / ab)``
``alpha_t, sigma_t``  the variance-preserving pair at ``sigma``: ``x_t = alpha_t x0 + sigma_t eps``
``lambda``          half log-SNR, ``log(alpha_t) - log(sigma_t)``
``x0``              the model's estimate of the clean sample
==================  ==================================================================

Tables (betas, ``alphas_cumprod``, sigmas) are float32 tensors like diffusers', so every
scheduler reproduces diffusers' numbers; per-step work only indexes precomputed tensors.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .. import errors
from ..configuration import ConfigMixin, init_parameters
from ..names import SCHEDULERS
from ..outputs import BaseOutput

#: The schedulers that can share one Stable Diffusion config (``compatibles``): all of them.
SD_FAMILY: tuple[str, ...] = tuple(SCHEDULERS)

BASE_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


@dataclasses.dataclass
class SchedulerOutput(BaseOutput):
    """What ``step`` returns.

    Attributes:
        prev_sample: the sample at the next (less noisy) timestep; feed it back to the model.
        pred_original_sample: the clean-sample estimate ``x0``, for schedulers that form one.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


# --------------------------------------------------------------------------- validation


def check_choice(scheduler: str, key: str, value: Any, valid: Iterable[str]) -> None:
    """Raise :class:`~pipeyard.errors.SchedulerConfigError` unless ``value`` is in ``valid``."""
    valid = tuple(valid)
    if value not in valid:
        raise errors.SchedulerConfigError(scheduler, key, value, valid)


def check_unsupported(scheduler: str, options: dict[str, tuple[Any, Any]]) -> None:
    """Refuse options pipeyard keeps in the config but does not implement, unless at default.

    ``options`` maps a key to ``(value given, default)``.
    """
    for key, (value, default) in options.items():
        if value != default and not (value is None and default is False):
            raise errors.UnsupportedSchedulerOptionError(scheduler, key, value, default)


def check_one_sigma_ramp(scheduler: str, config: Any) -> None:
    """Refuse ``use_karras_sigmas`` together with ``use_exponential_sigmas`` (only one ramp applies)."""
    if config.get("use_karras_sigmas") and config.get("use_exponential_sigmas"):
        raise errors.SchedulerConfigError(
            scheduler, "use_exponential_sigmas", True, [False, "True with use_karras_sigmas=False"]
        )


def check_num_inference_steps(scheduler: str, num_inference_steps: Any, num_train_timesteps: int) -> int:
    """Validate ``num_inference_steps`` (an int in ``[1, num_train_timesteps]``)."""
    ok = isinstance(num_inference_steps, (int, np.integer)) and not isinstance(num_inference_steps, bool)
    if not ok or not 1 <= num_inference_steps <= num_train_timesteps:
        raise errors.InferenceStepsError(scheduler, num_inference_steps, num_train_timesteps)
    return int(num_inference_steps)


# --------------------------------------------------------------------------- training noise schedule


def _alpha_bar_cosine(t: float) -> float:
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


def _alpha_bar_laplace(t: float) -> float:
    lmb = -0.5 * math.copysign(1, 0.5 - t) * math.log(1 - 2 * math.fabs(0.5 - t) + 1e-6)
    snr = math.exp(lmb)
    return math.sqrt(snr / (1 + snr))


def _alpha_bar_exp(t: float) -> float:
    return math.exp(t * -12.0)


def betas_from_alpha_bar(n: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> torch.Tensor:
    """Betas of a continuous ``alpha_bar(t)``, t in [0, 1], capped at ``max_beta`` (Nichol & Dhariwal 2021)."""
    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return torch.tensor(betas, dtype=torch.float32)


def named_betas(beta_schedule: str, n: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """The ``n`` training betas, float32, of a named schedule (the caller checks the name)."""
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, n, dtype=torch.float32)
    if beta_schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=torch.float32) ** 2
    if beta_schedule == "sigmoid":
        return torch.sigmoid(torch.linspace(-6, 6, n)) * (beta_end - beta_start) + beta_start
    alpha_bar = {"squaredcos_cap_v2": _alpha_bar_cosine, "laplace": _alpha_bar_laplace, "exp": _alpha_bar_exp}
    return betas_from_alpha_bar(n, alpha_bar[beta_schedule])


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale ``sqrt(alpha_bar)`` so the last step has zero SNR (Lin et al. 2023, Alg. 1)."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alphas = torch.cat([alpha_bar[0:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1 - alphas


# --------------------------------------------------------------------------- inference timesteps


def spaced_timesteps(spacing: str, num_train: int, num_steps: int, steps_offset: int = 0) -> np.ndarray:
    """Descending training timesteps for ``num_steps`` steps (float64; callers cast).

    ``linspace`` spreads them evenly over [0, T-1] (not rounded: callers that want integers
    round); ``leading`` takes multiples of ``T // n`` plus ``steps_offset``; ``trailing``
    counts down from ``T - 1`` by ``T / n`` (Lin et al. 2023, table 2).
    """
    if spacing == "linspace":
        return np.linspace(0, num_train - 1, num_steps)[::-1].copy()
    if spacing == "leading":
        ratio = num_train // num_steps
        return (np.arange(0, num_steps) * ratio).round()[::-1] + steps_offset
    ratio = num_train / num_steps
    return np.round(np.arange(num_train, 0, -ratio)) - 1


def solver_timesteps(spacing: str, num_train: int, num_steps: int, steps_offset: int, last: int) -> np.ndarray:
    """Integer timesteps of the multistep ODE solvers: a grid of ``n + 1`` points, minus ``t = 0``.

    ``last`` is one past the highest usable timestep (``num_train`` unless clipped by lambda).
    """
    if spacing == "linspace":
        grid = np.linspace(0, last - 1, num_steps + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ratio = last // (num_steps + 1)
        grid = (np.arange(0, num_steps + 1) * ratio).round()[::-1][:-1] + steps_offset
    else:
        grid = np.arange(last, 0, -num_train / num_steps).round() - 1
    return grid.astype(np.int64)


# --------------------------------------------------------------------------- sigmas


def train_sigmas(alphas_cumprod: torch.Tensor) -> np.ndarray:
    """``sqrt((1 - alpha_bar) / alpha_bar)`` per training step, as float32 numpy."""
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).numpy()


def karras_sigmas(sigma_min: float, sigma_max: float, num_steps: int, rho: float = 7.0) -> np.ndarray:
    """Descending sigmas evenly spaced in ``sigma ** (1 / rho)`` (Karras et al. 2022, eq. 5)."""
    ramp = np.linspace(0, 1, num_steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, num_steps: int) -> np.ndarray:
    """Descending sigmas evenly spaced in ``log(sigma)``."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), num_steps))


def sigma_to_t(sigmas: np.ndarray, log_sigmas: np.ndarray, in_weight_dtype: bool = False) -> np.ndarray:
    """Fractional training timesteps of ``sigmas``, interpolating linearly in ``log(sigma)``.

    The result is float64, or, with ``in_weight_dtype``, the dtype of the weights (float32
    for float32 inputs, as diffusers' DPM2 midpoint timesteps are).
    """
    sigmas = np.asarray(sigmas)
    log_sigma = np.log(np.maximum(sigmas, 1e-10)).reshape(-1)
    dists = log_sigma[None, :] - log_sigmas[:, None]
    low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high = low + 1
    w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high]), 0, 1)
    if in_weight_dtype:
        low, high = low.astype(w.dtype), high.astype(w.dtype)
    return ((1 - w) * low + w * high).reshape(sigmas.shape)


def doubled_after_first(values: torch.Tensor, extra_last: bool = False) -> torch.Tensor:
    """``[v0, v1, v1, ..., vn, vn]`` (then ``vn`` once more if ``extra_last``): second-order schedules."""
    tail = values[-1:] if extra_last else values[:0]
    return torch.cat([values[:1], values[1:].repeat_interleave(2), tail])


def alpha_sigma(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The variance-preserving ``(alpha_t, sigma_t)`` of a variance-exploding ``sigma``."""
    alpha_t = 1 / (sigma**2 + 1) ** 0.5
    return alpha_t, sigma * alpha_t


def half_log_snr(sigma: torch.Tensor) -> torch.Tensor:
    """``lambda = log(alpha_t) - log(sigma_t)`` at ``sigma``."""
    alpha_t, sigma_t = alpha_sigma(sigma)
    return torch.log(alpha_t) - torch.log(sigma_t)


# --------------------------------------------------------------------------- x0 handling


def threshold_sample(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding: clip each sample at its ``ratio`` quantile of |x0| (Saharia et al. 2022)."""
    dtype = x0.dtype
    batch, channels, *rest = x0.shape
    flat = x0.reshape(batch, -1)
    if dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    flat = torch.clamp(flat, -s, s) / s
    return flat.reshape(batch, channels, *rest).to(dtype)


def predict_x0(
    prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, alpha_t: float, sigma_t: float
) -> torch.Tensor:
    """The clean-sample estimate from the model's output, for ``x = alpha_t x0 + sigma_t eps``.

    The one conversion every scheduler uses: DDPM, DDIM, PNDM and the solvers call it with the
    variance-preserving pair (``alpha_t = sqrt(ab)``, ``sigma_t = sqrt(1 - ab)``), the
    k-diffusion samplers through :meth:`SigmaSchedulerMixin._predict_x0` with ``alpha_t = 1``
    (``x = x0 + sigma eps``). Per type of output:

    * ``epsilon`` (the noise): ``x0 = (x - sigma_t eps) / alpha_t``;
    * ``sample`` (x0 itself): returned as is;
    * ``v_prediction`` (``v = alpha_t eps - sigma_t x0``, Salimans & Ho 2022): ``x0 = alpha_t x - sigma_t v``.

    A factor ``alpha_t`` of exactly 1 is skipped rather than applied (the same numbers, one
    tensor operation less).
    """
    if prediction_type == "sample":
        return model_output
    if prediction_type == "epsilon":
        x0 = sample - sigma_t * model_output
        return x0 if alpha_t == 1 else x0 / alpha_t
    signal = sample if alpha_t == 1 else alpha_t * sample
    return signal - sigma_t * model_output  # v_prediction


def predict_epsilon(
    prediction_type: str, model_output: torch.Tensor, sample: torch.Tensor, alpha_t: float, sigma_t: float
) -> torch.Tensor:
    """The noise estimate from the model's output, for ``x = alpha_t x0 + sigma_t eps``.

    The counterpart of :func:`predict_x0` for the schedulers that integrate eps (PNDM, DDIM's
    direction term, the ``dpmsolver`` algorithms, DEIS, UniPC with ``predict_x0=False``);
    ``predict_epsilon("sample", x0, ...)`` turns a (thresholded) x0 back into eps.
    """
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "sample":
        return (sample - alpha_t * model_output) / sigma_t
    return alpha_t * model_output + sigma_t * sample  # v_prediction


def broadcast_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``values`` of shape ``(batch,)`` reshaped to broadcast against ``like``."""
    return values.flatten().reshape(-1, *([1] * (like.ndim - 1)))


# --------------------------------------------------------------------------- the mixin


@functools.cache
def _init_defaults(cls: type) -> dict[str, Any]:
    """The ``__init__`` defaults of a scheduler class by name, read from its signature once."""
    return {name: param.default for name, param in init_parameters(cls).items()}


#: ``__init__`` annotations whose values must be numbers: annotation -> (accepted types, name).
_NUMBER_ANNOTATIONS = {"int": ((numbers.Integral,), "an integer"), "float": ((numbers.Real,), "a number")}


@functools.cache
def _number_options(cls: type) -> dict[str, tuple[tuple[type, ...], str, bool]]:
    """Options of ``cls`` annotated ``int`` / ``float`` (optionally ``| None``): types, wording, None allowed."""
    found = {}
    for name, param in init_parameters(cls).items():
        text = str(param.annotation).replace(" ", "")
        optional = text.endswith("|None") or text.startswith("None|")
        bare = text.removesuffix("|None").removeprefix("None|")
        if bare in _NUMBER_ANNOTATIONS:
            types, wording = _NUMBER_ANNOTATIONS[bare]
            found[name] = (types, wording, optional)
    return found


def check_number_options(scheduler: type, config: Any) -> None:
    """Refuse a number option holding anything else (a config file's ``null``, ``"10"``, ``[]``).

    Raises:
        SchedulerOptionTypeError: naming the option, its value and what it must be.
    """
    for key, (types, wording, optional) in _number_options(scheduler).items():
        value = config.get(key)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise errors.SchedulerOptionTypeError(scheduler.__name__, key, value, wording)


def _check_trained_betas(scheduler: str, betas: Any, num_train_timesteps: int) -> None:
    """``trained_betas`` must be one number per training step (an empty or ragged list breaks later)."""
    try:
        values = np.asarray(betas.cpu() if isinstance(betas, torch.Tensor) else betas)
    except (ValueError, TypeError):  # ragged lists
        values = None
    if values is None or values.ndim != 1 or values.dtype.kind not in "iuf" or len(values) != num_train_timesteps:
        raise errors.SchedulerOptionTypeError(
            scheduler, "trained_betas", betas, f"a list of num_train_timesteps ({num_train_timesteps}) numbers"
        )


class SchedulerMixin(ConfigMixin):
    """Base of every scheduler: config I/O, ``compatibles``, construction and step-index bookkeeping.

    Every ``__init__`` checks its options (:meth:`_check_choices`, :meth:`_check_unsupported`),
    then calls :meth:`_init_noise_schedule`; what follows that call is the scheduler's own state.

    Subclasses call :meth:`_set_schedule` at the end of ``set_timesteps``; it maps each
    timestep to its position once, so ``step`` finds its place with a dict lookup. For a
    timestep listed twice (second-order schedulers), the second position is used, as in
    diffusers, so that starting from a timestep mid-schedule lands on the first-order half.
    """

    config_name: ClassVar[str] = "scheduler_config.json"
    #: Class names (exported by ``pipeyard``) that can be built from this class's config.
    _compatibles: ClassVar[tuple[str, ...]] = SD_FAMILY
    #: Model evaluations per step (2 for Heun-style schedulers).
    order: ClassVar[int] = 1
    #: Whether sampling goes through ``sigma = sqrt((1 - ab) / ab)``, which must stay finite at
    #: the last training step (see :meth:`_init_noise_schedule`); False where ``ab`` is used as is.
    _uses_sigma: ClassVar[bool] = True

    num_inference_steps: int | None = None
    timesteps: torch.Tensor
    _step_index: int | None = None
    _begin_index: int | None = None
    _index_of: dict[float, int]

    @property
    def compatibles(self) -> list[type[SchedulerMixin]]:
        """The scheduler classes that can share this config (``Other.from_config(self.config)``)."""
        return self._get_compatibles()

    @classmethod
    def _get_compatibles(cls) -> list[type[SchedulerMixin]]:
        package = importlib.import_module("pipeyard")
        others = [name for name in dict.fromkeys(cls._compatibles) if name != cls.__name__]
        return [cls, *(getattr(package, name) for name in others if hasattr(package, name))]

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def __bool__(self) -> bool:
        return True  # a scheduler is never falsy, whatever its length (or lack of config)

    @property
    def step_index(self) -> int | None:
        """Position of the next ``step`` in ``timesteps``; None before the first one."""
        return self._step_index

    @step_index.setter
    def step_index(self, value: int | None) -> None:  # schedulers defined in pipeline files set it
        self._step_index = value

    @property
    def begin_index(self) -> int | None:
        """Where sampling starts, when a pipeline set it (image-to-image); else None."""
        return self._begin_index

    @begin_index.setter
    def begin_index(self, value: int | None) -> None:
        self._begin_index = value

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start at ``timesteps[begin_index]`` (pipelines call this before ``add_noise``)."""
        self._begin_index = begin_index

    # ------------------------------------------------------------------ construction

    def _init_noise_schedule(
        self,
        num_train_timesteps: int,
        beta_start: float,
        beta_end: float,
        beta_schedule: str,
        trained_betas: Sequence[float] | np.ndarray | None,
        *,
        beta_schedules: Sequence[str] = BASE_BETA_SCHEDULES,
        rescale_betas_zero_snr: bool = False,
    ) -> None:
        """Build the training noise schedule: every ``__init__`` calls this once its options are checked.

        ``betas`` are ``trained_betas`` when given, else the named ``beta_schedule``, which must be
        one of ``beta_schedules`` (else :class:`~pipeyard.errors.SchedulerConfigError`); they are
        rescaled to zero terminal SNR if asked. Then ``alphas = 1 - betas`` and ``alphas_cumprod``,
        all float32. Rescaling makes the last ``alpha_bar`` 0, an infinite sigma: where sampling
        goes through sigma (``_uses_sigma``) it is set to ``2**-24`` instead (fp16's smallest
        subnormal, as diffusers does). Last, :meth:`_init_train_state` sets what the scheduler
        holds before ``set_timesteps``; ``num_inference_steps`` is None until then.
        """
        check_number_options(type(self), self.config)
        if trained_betas is not None:
            _check_trained_betas(type(self).__name__, trained_betas, num_train_timesteps)
            self.betas = torch.tensor(np.asarray(trained_betas), dtype=torch.float32)
        else:
            check_choice(type(self).__name__, "beta_schedule", beta_schedule, beta_schedules)
            self.betas = named_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        if rescale_betas_zero_snr:
            self.betas = rescale_zero_terminal_snr(self.betas)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        if rescale_betas_zero_snr and self._uses_sigma:
            self.alphas_cumprod[-1] = 2**-24  # keep the last sigma finite
        self.num_inference_steps = None
        self._init_train_state()

    def _init_train_state(self) -> None:
        """What the scheduler holds before ``set_timesteps``; nothing here.

        Each family's mixin sets it (``timesteps``, ``sigmas``, ``init_noise_sigma``):
        :class:`AlphaBarNoiseMixin`, :class:`SigmaSchedulerMixin` and ``VPSolverMixin``.
        """

    def _check_choices(self, **valid: Iterable[Any]) -> None:
        """Check the options named by ``valid``, in that order, against their valid values.

        Values come from the config, which holds the ``__init__`` arguments by the time its body
        runs; the first option not among its valid values raises
        :class:`~pipeyard.errors.SchedulerConfigError`.
        """
        name, config = type(self).__name__, self.config
        for key, values in valid.items():
            check_choice(name, key, config[key], values)

    def _check_unsupported(self, *keys: str) -> None:
        """Refuse the options ``keys`` (kept in the config, not implemented) unless at their default.

        Values come from the config (as in :meth:`_check_choices`) and defaults from the
        ``__init__`` signature, so neither is written twice.
        """
        defaults = _init_defaults(type(self))
        check_unsupported(type(self).__name__, {key: (self.config[key], defaults[key]) for key in keys})

    # ------------------------------------------------------------------ bookkeeping

    def _set_schedule(self, timesteps: torch.Tensor, num_inference_steps: int) -> None:
        """Install ``timesteps`` and build the timestep -> index map."""
        self.timesteps = timesteps
        self.num_inference_steps = num_inference_steps
        positions: dict[float, list[int]] = {}
        for i, t in enumerate(timesteps.tolist()):
            positions.setdefault(t, []).append(i)
        self._index_of = {t: ix[1] if len(ix) > 1 else ix[0] for t, ix in positions.items()}
        self._step_index = None
        self._begin_index = None

    def _require_schedule(self) -> None:
        # ready once set_timesteps ran, or from __init__ where diffusers is (Euler: _use_training_schedule)
        if self.num_inference_steps is None and self.__dict__.get("_index_of") is None:
            raise errors.SchedulerNotReadyError(type(self).__name__)

    def index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        """Position of ``timestep`` in ``timesteps``.

        Raises:
            SchedulerNotReadyError: ``set_timesteps`` was not called.
            TimestepNotInScheduleError: ``timestep`` is not one of ``timesteps``.
        """
        self._require_schedule()
        key = timestep.item() if isinstance(timestep, torch.Tensor) else timestep
        try:
            return self._index_of[key]
        except (KeyError, TypeError):
            raise errors.TimestepNotInScheduleError(type(self).__name__, timestep, self.timesteps.tolist()) from None

    def _advance_index(self, timestep: float | torch.Tensor) -> int:
        """The current step index, set from ``timestep`` (or the begin index) on the first call."""
        if self._step_index is None:
            self._step_index = self._begin_index if self._begin_index is not None else self.index_for_timestep(timestep)
        else:
            self.index_for_timestep(timestep)  # only validates
        return self._step_index

    def _check_output_shape(self, model_output: torch.Tensor, sample: torch.Tensor, learned: bool = False) -> None:
        if model_output.shape == sample.shape:
            return
        doubled = (sample.shape[0], 2 * sample.shape[1], *sample.shape[2:])
        if learned and model_output.ndim == sample.ndim and tuple(model_output.shape) == doubled:
            return
        raise errors.ModelOutputShapeError(type(self).__name__, tuple(model_output.shape), tuple(sample.shape))

    def _step_indices(self, timesteps: torch.Tensor) -> list[int]:
        """Step indices for ``add_noise``: per timestep, or the begin/current index when set."""
        if self._begin_index is None:
            return [self.index_for_timestep(t) for t in timesteps.reshape(-1)]
        index = self._step_index if self._step_index is not None else self._begin_index
        return [index] * timesteps.reshape(-1).shape[0]


class AlphaBarNoiseMixin:
    """Schedulers indexed by training timestep (DDPM, DDIM, PNDM), which use ``alpha_bar`` as is.

    Gives their state before ``set_timesteps`` and ``add_noise``: ``sqrt(ab) x0 + sqrt(1 - ab) eps``.
    """

    _uses_sigma: ClassVar[bool] = False
    alphas_cumprod: torch.Tensor
    config: Any

    def _init_train_state(self) -> None:
        """Before ``set_timesteps``: every training timestep (int64, descending); unit starting noise."""
        self.init_noise_sigma = 1.0
        self.timesteps = torch.arange(self.config.num_train_timesteps - 1, -1, -1, dtype=torch.int64)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Noise ``original_samples`` to the training ``timesteps`` (one per batch element)."""
        alpha_bar = self.alphas_cumprod.to(device=original_samples.device, dtype=original_samples.dtype)
        alpha_bar = alpha_bar[timesteps.to(original_samples.device)]
        sqrt_ab = broadcast_to(alpha_bar**0.5, original_samples)
        sqrt_one_minus_ab = broadcast_to((1 - alpha_bar) ** 0.5, original_samples)
        return sqrt_ab * original_samples + sqrt_one_minus_ab * noise

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The v-prediction target ``sqrt(ab) eps - sqrt(1 - ab) x0`` (Salimans & Ho 2022)."""
        alpha_bar = self.alphas_cumprod.to(device=sample.device, dtype=sample.dtype)[timesteps.to(sample.device)]
        return broadcast_to(alpha_bar**0.5, sample) * noise - broadcast_to((1 - alpha_bar) ** 0.5, sample) * sample


@dataclasses.dataclass(frozen=True)
class VPScalars:
    """Per-sigma scalars of the VE <-> VP change of variables, float32 like diffusers' per-step math.

    ``input_scale = sqrt(sigma^2 + 1)`` divides the model input; a v-prediction gives
    ``x0 = v * v_out + x / v_skip`` with ``v_out = -sigma / sqrt(sigma^2 + 1)``, ``v_skip = sigma^2 + 1``.
    """

    input_scale: list[float]
    v_out: list[float]
    v_skip: list[float]

    @classmethod
    def of(cls, sigmas: torch.Tensor) -> VPScalars:
        return cls(
            ((sigmas**2 + 1) ** 0.5).tolist(), (-sigmas / (sigmas**2 + 1) ** 0.5).tolist(), (sigmas**2 + 1).tolist()
        )


class SigmaSchedulerMixin(SchedulerMixin):
    """Shared parts of the k-diffusion samplers (Euler, Heun, LMS, DPM2): sigma tables and inputs.

    Their sample lives in the variance-exploding space ``x = x0 + sigma * eps``; the model sees
    ``x / sqrt(sigma ** 2 + 1)`` (``scale_model_input``). Subclasses fill ``self.sigmas``
    (float32, CPU, one more entry than ``timesteps``).
    """

    sigmas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @property
    def init_noise_sigma(self) -> float:
        """Standard deviation of the starting noise: the largest sigma (+1 in quadrature for leading)."""
        max_sigma = self.sigmas.max()
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return max_sigma.item()
        return ((max_sigma**2 + 1) ** 0.5).item()

    def _init_train_state(self) -> None:
        """Before ``set_timesteps``: every training step, so ``init_noise_sigma`` is defined."""
        sigmas = train_sigmas(self.alphas_cumprod)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas[::-1], [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(np.linspace(0, len(sigmas) - 1, len(sigmas))[::-1].copy())

    def _inference_sigmas(
        self,
        num_inference_steps: int,
        round_karras_t: bool = False,
        timesteps: np.ndarray | None = None,
        num_train_timesteps: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(timesteps, sigmas)`` for the configured spacing (over ``num_train_timesteps``,
        default the config's) or the given float32 ``timesteps``, then karras/exponential if asked.

        Timesteps come back float32-valued; sigmas float64, without the final zero.
        """
        cfg = self.config
        check_one_sigma_ramp(type(self).__name__, cfg)
        if timesteps is None:
            timesteps = spaced_timesteps(
                cfg.timestep_spacing, num_train_timesteps or cfg.num_train_timesteps, num_inference_steps,
                cfg.steps_offset,
            ).astype(np.float32)
        table = train_sigmas(self.alphas_cumprod)
        sigmas = np.interp(timesteps, np.arange(0, len(table)), table)
        if cfg.get("use_karras_sigmas") or cfg.get("use_exponential_sigmas"):
            ramp = karras_sigmas if cfg.get("use_karras_sigmas") else exponential_sigmas
            low = cfg.get("sigma_min") if cfg.get("sigma_min") is not None else sigmas[-1].item()
            high = cfg.get("sigma_max") if cfg.get("sigma_max") is not None else sigmas[0].item()
            sigmas = ramp(low, high, num_inference_steps)
            timesteps = sigma_to_t(sigmas, np.log(table))
            if round_karras_t and cfg.get("use_karras_sigmas"):
                timesteps = timesteps.round()
        return timesteps, sigmas

    def _use_training_schedule(self) -> None:
        """Let ``step`` run before ``set_timesteps``, on the training schedule that
        :meth:`_init_train_state` set, as diffusers' Euler samplers do; ``num_inference_steps``
        stays None. Call after installing the per-step scalars of ``self.sigmas``."""
        self._set_schedule(self.timesteps, len(self.timesteps))
        self.num_inference_steps = None

    def _install_sigmas(self, sigmas: torch.Tensor) -> None:
        """Keep ``sigmas`` (float32, CPU) and the per-step scalars derived from it."""
        self.sigmas = sigmas
        self._sigmas_list = sigmas.tolist()
        self._vp = VPScalars.of(sigmas)

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor) -> torch.Tensor:
        """The model's input at this step: ``sample / sqrt(sigma ** 2 + 1)``."""
        return sample / self._vp.input_scale[self._advance_index(timestep)]

    _sigmas_list: list[float]
    _vp: VPScalars

    def _predict_x0(
        self, model_output: torch.Tensor, sample: torch.Tensor, sigma: float, k: int, vp: VPScalars | None = None
    ) -> torch.Tensor:
        """x0 at noise level ``sigma`` of this view, ``x = x0 + sigma eps``, through :func:`predict_x0`.

        eps and sample predictions convert with ``alpha_t = 1``, ``sigma_t = sigma``. A
        v-prediction is defined on the variance-preserving pair ``(1, sigma) / sqrt(sigma^2 + 1)``,
        which gives ``x0 = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v``: the first term is
        passed as the sample, with ``alpha_t = 1`` and ``-v_out[k]`` of ``vp`` (default
        ``self._vp``) as ``sigma_t``, so the float32 operations stay diffusers' own.
        """
        kind = self.config.prediction_type
        if kind != "v_prediction":
            return predict_x0(kind, model_output, sample, 1.0, sigma)
        vp = vp if vp is not None else self._vp
        return predict_x0(kind, model_output, sample / vp.v_skip[k], 1.0, -vp.v_out[k])

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``x0 + sigma * eps`` at each of ``timesteps`` (values from ``self.timesteps``)."""
        sigmas = self.sigmas.to(device=original_samples.device, dtype=original_samples.dtype)
        sigma = broadcast_to(sigmas[self._step_indices(timesteps)], original_samples)
        return original_samples + noise * sigma

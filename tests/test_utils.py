"""pipeyard.utils: the small helpers diffusers-written pipelines import, used the way they use them.

diffusers (a test-only dependency) is the oracle where its behaviour is observable: the same
calls give the same values, warnings and refusals, in pipeyard's own types.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging as stdlib_logging
import subprocess
import sys
import warnings

import pytest
import torch

from pipeyard import errors
from pipeyard.outputs import BaseOutput
from pipeyard.torch_utils import randn_tensor
from pipeyard.utils import (
    CONFIG_NAME,
    ONNX_WEIGHTS_NAME,
    PIL_INTERPOLATION,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFETENSORS_WEIGHTS_NAME,
    USE_PEFT_BACKEND,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
    deprecate,
    is_torch_xla_available,
    logging,
    replace_example_docstring,
    scale_lora_layers,
    unscale_lora_layers,
)

diffusers = pytest.importorskip("diffusers")


# --------------------------------------------------------------------------- deprecate


def test_deprecate_warns_a_future_warning_of_pipeyards_category_with_the_standard_sentence() -> None:
    with pytest.warns(errors.PipeyardDeprecationWarning) as record:
        assert deprecate("decode_latents", "1.0.0", "Use VaeImageProcessor.postprocess.") is None
    assert issubclass(record[0].category, FutureWarning)
    assert issubclass(record[0].category, errors.PipeyardWarning)
    assert str(record[0].message) == (
        "`decode_latents` is deprecated and will be removed in version 1.0.0. Use VaeImageProcessor.postprocess."
    )


def test_deprecate_without_standard_warn_warns_the_message_alone() -> None:
    with pytest.warns(FutureWarning) as record:
        deprecate("steps_offset!=1", "1.0.0", "Set steps_offset to 1.", standard_warn=False)
    assert str(record[0].message) == "Set steps_offset to 1."


def test_deprecate_warns_the_same_text_as_diffusers() -> None:
    from diffusers.utils import deprecate as diffusers_deprecate

    calls = [
        (("scale", "1.0.0", "Pass `scale` through cross_attention_kwargs."), {}),
        (("callback", "1.0.0", "Use callback_on_step_end."), {"take_from": {"callback": 1}}),
        (("steps_offset!=1", "1.0.0", "Outdated config."), {"standard_warn": False}),
    ]
    for args, kwargs in calls:
        with warnings.catch_warnings(record=True) as ours:
            warnings.simplefilter("always")
            deprecate(*args, **{k: dict(v) if isinstance(v, dict) else v for k, v in kwargs.items()})
        with warnings.catch_warnings(record=True) as theirs:
            warnings.simplefilter("always")
            diffusers_deprecate(*args, **{k: dict(v) if isinstance(v, dict) else v for k, v in kwargs.items()})
        assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]


def test_deprecate_takes_deprecated_keywords_out_of_kwargs_and_returns_their_values() -> None:
    kwargs = {"callback": print, "callback_steps": 3}
    with pytest.warns(FutureWarning) as record:
        callback, steps = deprecate(
            ("callback", "1.0.0", "Use callback_on_step_end."),
            ("callback_steps", "1.0.0", "Use callback_on_step_end."),
            take_from=kwargs,
        )
    assert (callback, steps) == (print, 3)
    assert kwargs == {}
    assert [str(w.message).split(" is deprecated")[0] for w in record] == [
        "The `callback` argument", "The `callback_steps` argument"
    ]


def test_deprecate_is_silent_for_a_deprecated_keyword_that_was_not_passed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert deprecate("callback", "1.0.0", "unused", take_from={}) is None


def test_deprecate_reads_a_deprecated_attribute_from_an_object() -> None:
    class Holder:
        old_name = 7

    with pytest.warns(FutureWarning, match="The `old_name` attribute is deprecated"):
        assert deprecate("old_name", "1.0.0", "Use new_name.", take_from=Holder()) == 7


def test_deprecate_refuses_keywords_left_over_naming_the_function_and_keys() -> None:
    def __call__(prompt: str, **kwargs: object) -> None:
        deprecate("callback", "1.0.0", "Use callback_on_step_end.", take_from=kwargs)

    with pytest.raises(errors.UnexpectedKeywordError) as info:
        __call__("a cat", guidance=7.5)
    assert isinstance(info.value, TypeError)
    assert "__call__()" in str(info.value) and "guidance" in str(info.value)
    assert info.value.filename == __file__


def test_deprecate_past_its_removal_version_is_refused_as_diffusers_refuses_it() -> None:
    with pytest.raises(ValueError, match="should be removed"):
        diffusers.utils.deprecate("old", "0.1.0", "gone")
    with pytest.raises(errors.DeprecationExpiredError) as info:
        deprecate("old", "0.1.0", "gone")
    assert isinstance(info.value, ValueError)
    assert "'old'" in str(info.value) and "0.1.0" in str(info.value) and "Remove" in str(info.value)


# --------------------------------------------------------------------------- logging


def test_get_logger_warns_info_and_warn_through_the_standard_logging(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.get_logger("pipeyard.test_utils_module")
    with caplog.at_level(stdlib_logging.INFO, logger="pipeyard.test_utils_module"):
        logger.warning("first %s", "warning")
        logger.info("an info")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the stdlib's Logger.warn would warn DeprecationWarning
            logger.warn("the old spelling")
    assert [r.getMessage() for r in caplog.records] == ["first warning", "an info", "the old spelling"]
    assert caplog.records[0].name == "pipeyard.test_utils_module"


def test_warning_once_logs_each_message_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.get_logger("pipeyard.test_utils_once")
    with caplog.at_level(stdlib_logging.WARNING, logger="pipeyard.test_utils_once"):
        for _ in range(3):
            logger.warning_once("only once")
    assert [r.getMessage() for r in caplog.records] == ["only once"]


def test_set_verbosity_sets_the_pipeyard_logger_level() -> None:
    before = stdlib_logging.getLogger("pipeyard").level
    try:
        logging.set_verbosity_error()
        assert logging.get_verbosity() == logging.ERROR
        assert not logging.get_logger("pipeyard.child").isEnabledFor(logging.WARNING)
        logging.set_verbosity_info()
        assert logging.get_verbosity() == logging.INFO
    finally:
        stdlib_logging.getLogger("pipeyard").setLevel(before)


# --------------------------------------------------------------------------- docstrings


EXAMPLES = """
    Examples:
        >>> pipe("a cat")
"""


def test_replace_example_docstring_fills_the_placeholder_line_as_diffusers_does() -> None:
    def make() -> object:
        def __call__() -> None:
            """Generate.

            Examples:

            Returns:
                images
            """

        return __call__

    ours = replace_example_docstring(EXAMPLES)(make())
    theirs = diffusers.utils.replace_example_docstring(EXAMPLES)(make())
    assert ours.__doc__ == theirs.__doc__
    assert ">>> pipe(\"a cat\")" in ours.__doc__


def test_replace_example_docstring_without_placeholder_is_a_typed_error_naming_the_function() -> None:
    def generate() -> None:
        """No examples here."""

    with pytest.raises(errors.ExampleDocstringError) as info:
        replace_example_docstring(EXAMPLES)(generate)
    assert isinstance(info.value, ValueError)
    assert "generate" in str(info.value) and "Examples:" in str(info.value)


# --------------------------------------------------------------------------- constants, PIL, LoRA, XLA


def test_file_name_constants_are_diffusers_own() -> None:
    from diffusers.utils import constants as theirs

    assert CONFIG_NAME == theirs.CONFIG_NAME
    assert WEIGHTS_NAME == theirs.WEIGHTS_NAME
    assert WEIGHTS_INDEX_NAME == theirs.WEIGHTS_INDEX_NAME
    assert SAFETENSORS_WEIGHTS_NAME == theirs.SAFETENSORS_WEIGHTS_NAME
    assert SAFE_WEIGHTS_INDEX_NAME == theirs.SAFE_WEIGHTS_INDEX_NAME
    assert ONNX_WEIGHTS_NAME == theirs.ONNX_WEIGHTS_NAME


def test_pil_interpolation_names_the_same_filters_as_diffusers() -> None:
    assert PIL_INTERPOLATION == diffusers.utils.PIL_INTERPOLATION


def test_no_peft_backend_and_no_xla() -> None:
    assert USE_PEFT_BACKEND is False
    assert is_torch_xla_available() is False


def test_lora_scaling_leaves_a_model_without_lora_untouched() -> None:
    model = torch.nn.Linear(4, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scale_lora_layers(model, 0.5)
    unscale_lora_layers(model, 0.5)
    unscale_lora_layers(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_lora_scaling_scales_and_unscales_the_layers_that_carry_a_lora() -> None:
    class TunerLayer(torch.nn.Module):  # PEFT's tuner-layer protocol
        def __init__(self) -> None:
            super().__init__()
            self.scale, self.active_adapters = 1.0, ["default"]

        def scale_layer(self, weight: float) -> None:
            self.scale *= weight

        def unscale_layer(self, weight: float) -> None:
            self.scale /= weight

        def set_scale(self, adapter: str, value: float) -> None:
            self.scale = value

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), TunerLayer())
    scale_lora_layers(model, 0.5)
    assert model[1].scale == 0.5
    unscale_lora_layers(model, 0.5)
    assert model[1].scale == 1.0
    scale_lora_layers(model, 0.25)
    unscale_lora_layers(model, 0.0)
    assert model[1].scale == 1.0


def test_importing_pipeyard_utils_imports_neither_torch_nor_pil() -> None:
    code = "import sys, pipeyard.utils; from pipeyard.utils import deprecate, logging; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- BaseOutput, randn_tensor


@dataclasses.dataclass
class Images(BaseOutput):
    images: list[int]
    nsfw_content_detected: list[bool] | None = None


def test_base_output_reads_like_diffusers_outputs() -> None:
    @dataclasses.dataclass
    class TheirImages(diffusers.utils.BaseOutput):
        images: list[int]
        nsfw_content_detected: list[bool] | None = None

    for both in ({"images": [1, 2]}, {"images": [1], "nsfw_content_detected": [False]}):
        ours, theirs = Images(**both), TheirImages(**both)
        assert ours.images == theirs.images == ours["images"] == ours[0]
        assert ours.to_tuple() == theirs.to_tuple()
        assert list(ours.keys()) == list(theirs.keys())
        assert list(ours) == list(theirs)
        assert len(ours) == len(theirs)
        assert ("nsfw_content_detected" in ours) == ("nsfw_content_detected" in theirs)
        assert dict(ours) == dict(theirs)


def test_base_output_item_assignment_sets_the_field_and_unknown_keys_are_refused() -> None:
    out = Images(images=[1])
    out["images"] = [2]
    assert out.images == [2] and out[0] == [2]
    with pytest.raises(KeyError, match="no field 'latents'"):
        out["latents"] = 3
    with pytest.raises(KeyError):
        out["nsfw_content_detected"]  # None fields are not keys, as in diffusers


def test_randn_tensor_takes_diffusers_parameters_and_gives_its_numbers() -> None:
    from diffusers.utils.torch_utils import randn_tensor as theirs

    assert list(inspect.signature(randn_tensor).parameters) == list(inspect.signature(theirs).parameters)
    for generator in (torch.Generator().manual_seed(3), [torch.Generator().manual_seed(i) for i in range(2)]):
        ours_t = randn_tensor((2, 4, 8, 8), generator=generator, dtype=torch.float32, layout=torch.strided)
        seeds = [3] if not isinstance(generator, list) else [0, 1]
        again = [torch.Generator().manual_seed(s) for s in seeds]
        theirs_t = theirs((2, 4, 8, 8), generator=again if len(again) > 1 else again[0], dtype=torch.float32)
        assert torch.equal(ours_t, theirs_t)

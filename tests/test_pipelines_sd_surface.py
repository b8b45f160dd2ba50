"""The Stable Diffusion surface diffusers-written pipelines call, proven against diffusers.

Each test calls a helper on pipeyard's :class:`StableDiffusionPipeline` (or its mixins, image
processor, sampling helpers) the way a diffusers community file does, and compares with the
same call on diffusers' pipeline loaded from the same tiny folder: same tensors within 1e-4.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import assert_images_equal

import pipeyard
from pipeyard import DiffusionPipeline, StableDiffusionPipeline, errors
from pipeyard.pipelines import loader_mixins, sampling
from pipeyard.pipelines.image_processor import VaeImageProcessor
from pipeyard.pipelines.stable_diffusion_mixin import StableDiffusionMixin

diffusers = pytest.importorskip("diffusers")

# diffusers' sigma schedulers call np.interp on torch tensors (a numpy 2 deprecation of theirs)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

ATOL = 1e-4


@pytest.fixture(scope="module")
def ours(tiny_sd_folder: Path) -> StableDiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def theirs(tiny_sd_folder: Path) -> Any:
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(tiny_sd_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert float((a.detach().float() - b.detach().float()).abs().max()) <= ATOL


# ---------------------------------------------------------------------- attributes


def test_class_attributes_match_diffusers(ours: Any, theirs: Any) -> None:
    assert ours._callback_tensor_inputs == theirs._callback_tensor_inputs
    assert ours.model_cpu_offload_seq == theirs.model_cpu_offload_seq
    assert list(ours._exclude_from_cpu_offload) == list(theirs._exclude_from_cpu_offload)
    assert set(ours._optional_components) == set(theirs._optional_components)
    assert ours.vae_scale_factor == theirs.vae_scale_factor
    assert ours._execution_device == theirs._execution_device == torch.device("cpu")
    assert isinstance(ours.image_processor, VaeImageProcessor)
    assert dict(ours.image_processor.config) == {
        k: v for k, v in theirs.image_processor.config.items() if not k.startswith("_")
    }
    assert isinstance(ours, StableDiffusionMixin)
    assert isinstance(ours, loader_mixins.TextualInversionLoaderMixin)


def test_call_properties_hold_the_last_call_settings(ours: Any) -> None:
    seen: dict[str, Any] = {}

    def record(pipe: Any, step: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        seen.update(
            guidance_scale=pipe.guidance_scale, cfg=pipe.do_classifier_free_guidance, clip_skip=pipe.clip_skip,
            rescale=pipe.guidance_rescale, xattn=pipe.cross_attention_kwargs, steps=pipe.num_timesteps,
            interrupt=pipe.interrupt,
        )
        return {}

    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    ours("a cat", num_inference_steps=2, guidance_scale=3.0, guidance_rescale=0.3, clip_skip=1,
         cross_attention_kwargs={"scale": 0.5}, output_type="latent", callback_on_step_end=record)
    assert seen == dict(guidance_scale=3.0, cfg=True, clip_skip=1, rescale=0.3, xattn={"scale": 0.5},
                        steps=2, interrupt=False)
    assert ours.lora_scale == 0.5


# ---------------------------------------------------------------------- helper methods


def test_encode_prompt_returns_diffusers_tuple_with_its_signature(ours: Any, theirs: Any) -> None:
    args = (["a photo of a cat", "a dog"], torch.device("cpu"), 2, True, ["blurry", "low quality"])
    mine = ours.encode_prompt(*args, None, None, None, None)  # ..., lora_scale, clip_skip
    ref = theirs.encode_prompt(*args, None, None, None, None)
    for a, b in zip(mine, ref, strict=True):
        close(a, b)


def test_encode_prompt_clip_skip_works_with_transformers_5(ours: Any, theirs: Any) -> None:
    text_encoder = ours.text_encoder
    embeds, negative = ours.encode_prompt("a cat", torch.device("cpu"), 1, False, clip_skip=1)
    assert negative is None
    tokens = ours.tokenizer("a cat", padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    hidden = text_encoder(tokens.input_ids, output_hidden_states=True).hidden_states[-2]
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    close(embeds, norm(hidden))
    if not hasattr(theirs.text_encoder, "text_model"):  # diffusers 0.42 on transformers 5 breaks here
        with pytest.raises(AttributeError):
            theirs.encode_prompt("a cat", torch.device("cpu"), 1, False, clip_skip=1)


def test_deprecated_encode_prompt_concatenates_negative_then_prompt(ours: Any, theirs: Any) -> None:
    with pytest.warns(FutureWarning, match="encode_prompt"):
        mine = ours._encode_prompt("a cat", torch.device("cpu"), 1, True, "blurry")
    with pytest.warns(FutureWarning):
        ref = theirs._encode_prompt("a cat", torch.device("cpu"), 1, True, "blurry")
    close(mine, ref)


def test_prepare_latents_and_extra_step_kwargs_match(ours: Any, theirs: Any) -> None:
    args = (2, 4, 16, 16, torch.float32, torch.device("cpu"))
    close(ours.prepare_latents(*args, torch.Generator().manual_seed(3)),
          theirs.prepare_latents(*args, torch.Generator().manual_seed(3)))
    for name in ("DDIMScheduler", "EulerAncestralDiscreteScheduler"):
        ours.scheduler = getattr(pipeyard, name).from_config(ours.scheduler.config)
        theirs.scheduler = getattr(diffusers, name).from_config(theirs.scheduler.config)
        generator = torch.Generator()
        assert ours.prepare_extra_step_kwargs(generator, 0.5).keys() == theirs.prepare_extra_step_kwargs(generator, 0.5).keys()
    with pytest.raises(errors.BatchSizeMismatchError, match="generator has 3 entries but the batch has 2"):
        ours.prepare_latents(*args, [torch.Generator()] * 3)


@torch.no_grad()
def test_decode_latents_and_run_safety_checker_match(ours: Any, theirs: Any) -> None:
    latents = torch.randn(2, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    with pytest.warns(FutureWarning, match="decode_latents"):
        mine = ours.decode_latents(latents)
    with pytest.warns(FutureWarning):
        ref = theirs.decode_latents(latents)
    assert_images_equal(mine, ref, ATOL)
    decoded = ours.vae.decode(latents / ours.vae.config.scaling_factor).sample
    for image in (decoded, mine):  # a tensor in [-1, 1], or a numpy array in [0, 1]
        (a, flags_a), (b, flags_b) = (p.run_safety_checker(image, torch.device("cpu"), torch.float32) for p in (ours, theirs))
        assert flags_a == flags_b
        assert_images_equal(np.asarray(a), np.asarray(b), ATOL)


def test_get_guidance_scale_embedding_matches(ours: Any, theirs: Any) -> None:
    w = torch.tensor([1.5, 7.0])
    for dim in (256, 33):
        close(ours.get_guidance_scale_embedding(w, dim), theirs.get_guidance_scale_embedding(w, dim))
    with pytest.raises(errors.InputShapeError, match="1-d tensor of guidance scales"):
        ours.get_guidance_scale_embedding(torch.ones(2, 2))


def test_check_inputs_takes_diffusers_positional_callback_steps(ours: Any) -> None:
    ours.check_inputs("a cat", 16, 16, 1, "blurry")  # prompt, height, width, callback_steps, negative_prompt
    with pytest.raises(errors.PipelineInputError, match="callback_steps must be a positive integer, got 0"):
        ours.check_inputs("a cat", 16, 16, 0)
    with pytest.raises(errors.ConflictingInputsError, match="ip_adapter_image or ip_adapter_image_embeds"):
        ours.check_inputs("a cat", 16, 16, None, ip_adapter_image=1, ip_adapter_image_embeds=[torch.ones(1, 1, 1)])
    with pytest.raises(errors.PipelineInputError, match=r"not available; choose from \['latents'"):
        ours.check_inputs("a cat", 16, 16, None, callback_on_step_end_tensor_inputs=["noise"])


# ---------------------------------------------------------------------- the call


def test_call_with_lora_scale_and_no_lora_matches_plain_diffusers(ours: Any, theirs: Any) -> None:
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    theirs.scheduler = diffusers.DDIMScheduler.from_config(theirs.scheduler.config)
    kwargs = dict(num_inference_steps=2, output_type="np")
    # diffusers 0.42 without PEFT reaches text_encoder.text_model for the scale (gone in transformers 5);
    # with no LoRA loaded the scale changes nothing, so the reference is the call without it
    mine = ours("a cat", generator=torch.Generator().manual_seed(0), cross_attention_kwargs={"scale": 0.7}, **kwargs)
    ref = theirs("a cat", generator=torch.Generator().manual_seed(0), **kwargs)
    assert_images_equal(mine.images, ref.images, ATOL)


def test_interrupt_from_a_callback_skips_the_remaining_steps_like_diffusers(ours: Any, theirs: Any) -> None:
    def stop(pipe: Any, step: int, t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        pipe._interrupt = True
        return {}

    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    theirs.scheduler = diffusers.DDIMScheduler.from_config(theirs.scheduler.config)
    kwargs = dict(num_inference_steps=3, output_type="latent", callback_on_step_end=stop)
    mine = ours("a cat", generator=torch.Generator().manual_seed(1), **kwargs).images
    ref = theirs("a cat", generator=torch.Generator().manual_seed(1), **kwargs).images
    close(mine, ref)


def test_custom_timesteps_on_a_scheduler_without_them_is_refused(ours: Any) -> None:
    with pytest.raises(errors.SchedulerError, match="set_timesteps takes no custom timesteps"):
        ours("a cat", timesteps=[999, 500], output_type="latent")


# ---------------------------------------------------------------------- sampling helpers


def test_retrieve_timesteps_and_rescale_noise_cfg_match() -> None:
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg, retrieve_timesteps

    mine = sampling.retrieve_timesteps(pipeyard.EulerDiscreteScheduler(), 7, "cpu")
    ref = retrieve_timesteps(diffusers.EulerDiscreteScheduler(), 7, "cpu")
    close(mine[0], ref[0])
    assert mine[1] == ref[1] == 7
    with pytest.raises(errors.ConflictingInputsError, match="timesteps or sigmas, not both"):
        sampling.retrieve_timesteps(pipeyard.EulerDiscreteScheduler(), None, None, [1], [1.0])
    cfg, text = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    close(sampling.rescale_noise_cfg(cfg, text, 0.7), rescale_noise_cfg(cfg, text, 0.7))


# ---------------------------------------------------------------------- image processor


@pytest.mark.parametrize("options", [{}, {"vae_scale_factor": 4, "resample": "bicubic"},
                                     {"do_normalize": False, "do_binarize": True, "do_convert_grayscale": True}])
def test_vae_image_processor_preprocess_equals_diffusers(options: dict[str, Any]) -> None:
    from diffusers.image_processor import VaeImageProcessor as TheirProcessor

    rng = np.random.default_rng(0)
    pils = [PIL.Image.fromarray(rng.integers(0, 255, (21, 30, 3), dtype=np.uint8)) for _ in range(2)]
    inputs = [pils, pils[0], np.asarray(pils[0], dtype=np.float32)[None] / 255, torch.rand(2, 3, 20, 27)]
    mine, ref = VaeImageProcessor(**options), TheirProcessor(**options)
    for image in inputs:
        assert torch.equal(mine.preprocess(image, 16, 24), ref.preprocess(image, 16, 24))
    assert torch.equal(mine.preprocess(pils), ref.preprocess(pils))


def test_vae_image_processor_postprocess_equals_diffusers() -> None:
    from diffusers.image_processor import VaeImageProcessor as TheirProcessor

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2.4 - 1.2
    mine, ref = VaeImageProcessor(), TheirProcessor()
    for output_type in ("pt", "np"):
        for flags in (None, [True, False]):
            a, b = mine.postprocess(images, output_type, flags), ref.postprocess(images, output_type, flags)
            assert np.array_equal(np.asarray(a), np.asarray(b))
    pil_a, pil_b = mine.postprocess(images), ref.postprocess(images)
    assert [np.asarray(p).tolist() for p in pil_a] == [np.asarray(p).tolist() for p in pil_b]
    array = mine.pt_to_numpy(images.clamp(0, 1))
    assert np.array_equal(array, ref.pt_to_numpy(images.clamp(0, 1)))
    assert [p.tobytes() for p in mine.numpy_to_pil(array)] == [p.tobytes() for p in ref.numpy_to_pil(array)]


def test_vae_image_processor_refuses_bad_input_with_what_it_accepts() -> None:
    processor = VaeImageProcessor()
    with pytest.raises(errors.PipelineInputError, match="a PIL image, a numpy array or torch tensor.*got str"):
        processor.preprocess("cat.png")
    with pytest.raises(errors.UnknownOutputTypeError, match="unknown output_type 'jpeg'"):
        processor.postprocess(torch.zeros(1, 3, 8, 8), output_type="jpeg")
    with pytest.raises(errors.ConfigError, match="do_convert_rgb=True and do_convert_grayscale=True"):
        VaeImageProcessor(do_convert_rgb=True, do_convert_grayscale=True)


# ---------------------------------------------------------------------- mixins


def test_stable_diffusion_mixin_switches_vae_slicing_and_tiling(ours: Any) -> None:
    ours.enable_vae_slicing()
    ours.enable_vae_tiling()
    assert ours.vae.use_slicing and ours.vae.use_tiling
    ours.disable_vae_slicing()
    ours.disable_vae_tiling()
    assert not ours.vae.use_slicing and not ours.vae.use_tiling


def test_enable_freeu_on_a_unet_without_freeu_is_a_typed_unsupported_error(ours: Any) -> None:
    with pytest.raises(errors.UnsupportedFeatureError, match=r"StableDiffusionPipeline.enable_freeu is not supported") as info:
        ours.enable_freeu(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    assert isinstance(info.value, NotImplementedError)
    ours.disable_freeu()  # nothing enabled, nothing to undo


def test_fuse_qkv_projections_records_flags_and_keeps_the_numbers(ours: Any) -> None:
    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    before = ours("a cat", num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    ours.fuse_qkv_projections()
    assert ours.fusing_unet and ours.fusing_vae
    after = ours("a cat", num_inference_steps=2, output_type="latent", generator=torch.Generator().manual_seed(0)).images
    ours.unfuse_qkv_projections()
    assert not ours.fusing_unet
    assert torch.equal(before, after)


def test_maybe_convert_prompt_is_unchanged_without_textual_inversion_and_expands_multi_vector_tokens(
    ours: Any, theirs: Any
) -> None:
    assert ours.maybe_convert_prompt(["a cat", "a dog"], ours.tokenizer) == ["a cat", "a dog"]
    tokenizer = type(ours.tokenizer).from_pretrained(Path(theirs.config._name_or_path) / "tokenizer")
    tokenizer.add_tokens(["<cat>", "<cat>_1", "<cat>_2"])
    prompt = "a photo of <cat>"
    assert ours.maybe_convert_prompt(prompt, tokenizer) == theirs.maybe_convert_prompt(prompt, tokenizer)
    assert ours.maybe_convert_prompt(prompt, tokenizer) == "a photo of <cat> <cat>_1 <cat>_2"


@pytest.mark.parametrize("method, args", [
    ("load_lora_weights", ("lora.safetensors",)), ("load_textual_inversion", ("emb.bin",)),
    ("load_ip_adapter", ("h94/IP-Adapter", "models", "ip-adapter_sd15.safetensors")), ("fuse_lora", ()),
])
def test_loading_methods_pipeyard_lacks_raise_unsupported_feature_error(ours: Any, method: str, args: tuple) -> None:
    # load_ip_adapter: local folders only (tests/test_pipelines_ip_adapter.py loads one)
    what = "load_ip_adapter('h94/IP-Adapter')" if method == "load_ip_adapter" else method
    with pytest.raises(errors.UnsupportedFeatureError, match=re.escape(f"StableDiffusionPipeline.{what} is not supported by pipeyard yet: ")):
        getattr(ours, method)(*args)


def test_from_single_file_raises_unsupported_feature_error() -> None:
    with pytest.raises(errors.UnsupportedFeatureError, match="from_single_file is not supported.*from_pretrained"):
        StableDiffusionPipeline.from_single_file("model.safetensors")


def test_lora_scale_helpers_change_nothing_without_lora_layers(ours: Any) -> None:
    before = {k: v.clone() for k, v in ours.text_encoder.state_dict().items()}
    loader_mixins.adjust_lora_scale_text_encoder(ours.text_encoder, 0.3)
    loader_mixins.scale_lora_layers(ours.text_encoder, 0.3)
    loader_mixins.unscale_lora_layers(ours.text_encoder, 0.3)
    assert all(torch.equal(before[k], v) for k, v in ours.text_encoder.state_dict().items())


# ---------------------------------------------------------------------- a diffusers-written subclass

#: One source, run twice: as a subclass of diffusers' pipeline and of pipeyard's. It calls the
#: helpers the way older community files do (positional check_inputs, _encode_prompt,
#: decode_latents, numpy_to_pil, _execution_device, progress_bar, maybe_free_model_hooks).
SUBCLASS_SOURCE = textwrap.dedent('''
    import torch

    class OldStyleText2Image(Base):
        @torch.no_grad()
        def __call__(self, prompt, height=16, width=16, steps=3, guidance_scale=7.5, generator=None):
            self.check_inputs(prompt, height, width, 1)
            device = self._execution_device
            embeds = self._encode_prompt(prompt, device, 1, guidance_scale > 1.0, None)
            self.scheduler.set_timesteps(steps, device=device)
            latents = self.prepare_latents(1, self.unet.config.in_channels, height, width, embeds.dtype,
                                           device, generator)
            extra = self.prepare_extra_step_kwargs(generator, 0.0)
            for t in self.progress_bar(self.scheduler.timesteps):
                model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2), t)
                noise = self.unet(model_input, t, encoder_hidden_states=embeds).sample
                uncond, text = noise.chunk(2)
                noise = uncond + guidance_scale * (text - uncond)
                latents = self.scheduler.step(noise, t, latents, **extra).prev_sample
            image = self.decode_latents(latents)
            image, flagged = self.run_safety_checker(image, device, embeds.dtype)
            self.maybe_free_model_hooks()
            return self.numpy_to_pil(image), image, flagged
''')


def build_subclass(base: type) -> type:
    namespace: dict[str, Any] = {"Base": base}
    exec(compile(SUBCLASS_SOURCE, "<diffusers-style subclass>", "exec"), namespace)
    return namespace["OldStyleText2Image"]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_diffusers_written_subclass_gives_the_same_images(ours: Any, theirs: Any) -> None:
    mine_pipe = build_subclass(StableDiffusionPipeline).from_pipe(ours)
    their_pipe = build_subclass(diffusers.StableDiffusionPipeline).from_pipe(theirs)
    mine_pipe.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config, clip_sample=False)
    their_pipe.scheduler = diffusers.DDIMScheduler.from_config(theirs.scheduler.config, clip_sample=False)
    for pipe in (mine_pipe, their_pipe):
        pipe.set_progress_bar_config(disable=True)
    pil_a, mine, flags_a = mine_pipe("a photo of a cat", generator=torch.Generator().manual_seed(0))
    pil_b, ref, flags_b = their_pipe("a photo of a cat", generator=torch.Generator().manual_seed(0))
    assert flags_a == flags_b
    assert_images_equal(mine, ref, ATOL)
    assert [p.size for p in pil_a] == [p.size for p in pil_b]


# ---------------------------------------------------------------------- step-end callback objects


def test_cfg_cutoff_callback_turns_guidance_off_at_the_same_step_as_diffusers(ours: Any, theirs: Any) -> None:
    from diffusers.callbacks import MultiPipelineCallbacks as TheirMulti
    from diffusers.callbacks import SDCFGCutoffCallback as TheirCutoff

    from pipeyard.pipelines.callbacks import MultiPipelineCallbacks, SDCFGCutoffCallback

    ours.scheduler = pipeyard.DDIMScheduler.from_config(ours.scheduler.config)
    theirs.scheduler = diffusers.DDIMScheduler.from_config(theirs.scheduler.config)
    kwargs = dict(num_inference_steps=3, output_type="np")
    mine = ours("a cat", generator=torch.Generator().manual_seed(0), **kwargs,
                callback_on_step_end=MultiPipelineCallbacks([SDCFGCutoffCallback(cutoff_step_ratio=0.4)]))
    ref = theirs("a cat", generator=torch.Generator().manual_seed(0), **kwargs,
                 callback_on_step_end=TheirMulti([TheirCutoff(cutoff_step_ratio=0.4)]))
    assert ours.guidance_scale == 0.0
    assert_images_equal(mine.images, ref.images, ATOL)


def test_pipeline_callback_needs_exactly_one_cutoff() -> None:
    from pipeyard.pipelines.callbacks import PipelineCallback

    with pytest.raises(errors.ConfigError, match="exactly one of cutoff_step_ratio and cutoff_step_index"):
        PipelineCallback(cutoff_step_ratio=0.5, cutoff_step_index=2)
    with pytest.raises(errors.ConfigError, match=r"cutoff_step_ratio must be a float in \[0.0, 1.0\], got 2"):
        PipelineCallback(cutoff_step_ratio=2)


def test_from_pipe_with_custom_pipeline_builds_that_class_on_the_same_components(ours: Any, write_pipeline: Any) -> None:
    path = write_pipeline("walk.py", text=textwrap.dedent('''
        from pipeyard import StableDiffusionPipeline


        class WalkPipeline(StableDiffusionPipeline):
            """A custom pipeline reusing a loaded Stable Diffusion pipeline's components."""

            def steps_taken(self):
                return self.num_timesteps
    '''))
    walk = DiffusionPipeline.from_pipe(ours, custom_pipeline=str(path))
    assert type(walk).__name__ == "WalkPipeline" and isinstance(walk, StableDiffusionPipeline)
    assert walk.unet is ours.unet and walk.text_encoder is ours.text_encoder


def test_diffusers_written_clip_skip_reaches_text_model_on_transformers_5(ours: Any, write_pipeline: Any) -> None:
    """Files copied from diffusers call ``text_encoder.text_model.final_layer_norm`` themselves;
    in such a hosted file the path works, and the text encoder object is not changed."""
    path = write_pipeline("skip.py", text=textwrap.dedent('''
        import torch
        from diffusers import StableDiffusionPipeline


        class SkipPipeline(StableDiffusionPipeline):
            def last_norm_by_hand(self, prompt):
                tokens = self.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
                hidden = self.text_encoder(tokens.input_ids, output_hidden_states=True)[-1][-2]
                return self.text_encoder.text_model.final_layer_norm(hidden)
    '''))
    text_encoder = ours.text_encoder
    skip = DiffusionPipeline.from_pipe(ours, custom_pipeline=str(path))
    with torch.no_grad():
        by_hand = skip.last_norm_by_hand("a cat")
        embeds, _ = ours.encode_prompt("a cat", torch.device("cpu"), 1, False, clip_skip=1)
    close(by_hand, embeds)
    assert "text_model" not in vars(text_encoder) and not hasattr(text_encoder, "text_model")  # not edited

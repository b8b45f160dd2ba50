"""DiffusionPipeline base: components, config, save/load, injection rules, helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipeyard import ConfigMixin, DiffusionPipeline, plugins, register_to_config
from pipeyard.errors import (
    ComponentError,
    ComponentTypeError,
    EntryNotFoundError,
    MissingComponentError,
    PipelineNotFoundError,
    UnexpectedArgumentError,
    UnknownComponentClassError,
)


class ToySchedule(ConfigMixin):
    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(self, steps: int = 10):
        self.steps = steps


@pytest.fixture
def toy_classes(toy_model_class):
    """A toy pipeline class, and a plugin that resolves the toy component classes."""

    class ToyPipeline(DiffusionPipeline):
        def __init__(self, model: toy_model_class, scheduler: ToySchedule, extra=None, boost: float = 1.0):
            super().__init__()
            self.register_modules(model=model, scheduler=scheduler, extra=extra)
            self.register_to_config(boost=boost)

        def __call__(self, x):
            return self.model(x) * self.config.boost

    class Resolver:
        @plugins.hookimpl
        def pipeyard_resolve_component_class(self, library, class_name):
            return {"ToyModel": toy_model_class, "ToySchedule": ToySchedule}.get(class_name)

        @plugins.hookimpl
        def pipeyard_component_libraries(self):
            return ["toy-lib"]

    plugins.register(Resolver(), name="toy-resolver")
    return ToyPipeline, toy_model_class


@pytest.fixture
def saved(tmp_path, toy_classes):
    pipeline_cls, model_cls = toy_classes
    torch.manual_seed(0)
    pipe = pipeline_cls(model_cls(width=4), ToySchedule(7), boost=3.0)
    pipe.save_pretrained(tmp_path / "pipe")
    return pipe, tmp_path / "pipe"


def _x():
    return torch.randn(2, 4, generator=torch.Generator().manual_seed(0))


def test_register_modules_records_library_and_class(toy_classes):
    pipeline_cls, model_cls = toy_classes
    pipe = pipeline_cls(model_cls(width=4), ToySchedule())
    assert pipe.config["model"] == ["conftest", "ToyModel"]
    assert pipe.config["scheduler"] == ["test_pipeline_base", "ToySchedule"]
    assert pipe.config["extra"] == [None, None]
    assert set(pipe.components) == {"model", "scheduler", "extra"}


def test_reassigning_a_component_updates_the_config(toy_classes):
    pipeline_cls, model_cls = toy_classes
    pipe = pipeline_cls(model_cls(width=4), ToySchedule())
    replacement = object()
    pipe.extra = replacement
    assert pipe.components["extra"] is replacement
    assert pipe.config["extra"] == ["builtins", "object"]


def test_save_writes_model_index_and_subfolders(saved):
    _, folder = saved
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "ToyPipeline" and index["boost"] == 3.0
    assert index["model"] == ["conftest", "ToyModel"]
    assert (folder / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "scheduler" / "scheduler_config.json").is_file()
    assert not (folder / "extra").exists()


def test_round_trip_gives_identical_outputs(saved, toy_classes):
    pipe, folder = saved
    loaded = toy_classes[0].from_pretrained(folder)
    assert torch.equal(pipe(_x()), loaded(_x()))
    assert loaded.scheduler.steps == 7 and loaded.extra is None and loaded.config.boost == 3.0


def test_passed_component_wins_and_its_subfolder_is_not_read(saved, toy_classes):
    _, folder = saved
    for path in (folder / "scheduler").iterdir():
        path.unlink()
    mine = ToySchedule(99)
    loaded = toy_classes[0].from_pretrained(folder, scheduler=mine)
    assert loaded.scheduler is mine


def test_torch_dtype_per_component_with_default(saved, toy_classes):
    _, folder = saved
    loaded = toy_classes[0].from_pretrained(folder, torch_dtype={"default": torch.bfloat16})
    assert loaded.model.dtype == torch.bfloat16 and loaded.dtype == torch.bfloat16
    loaded = toy_classes[0].from_pretrained(folder, torch_dtype={"model": torch.float16, "default": torch.bfloat16})
    assert loaded.model.dtype == torch.float16


def test_typo_in_a_component_keyword_suggests_the_right_name(saved, toy_classes):
    with pytest.raises(UnexpectedArgumentError, match=r"'schedular' \(did you mean 'scheduler'\?\)"):
        toy_classes[0].from_pretrained(saved[1], schedular=ToySchedule())
    with pytest.raises(UnexpectedArgumentError, match="'torch_dtpye'.*'torch_dtype'"):
        toy_classes[0].from_pretrained(saved[1], torch_dtpye=torch.float16)


def test_missing_components_are_listed_together(tmp_path, toy_classes):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "ToyPipeline"}))
    with pytest.raises(MissingComponentError) as info:
        toy_classes[0].from_pretrained(tmp_path)
    assert [name for name, _ in info.value.missing] == ["model", "scheduler"]
    assert "scheduler (expected ToySchedule)" in str(info.value) and "e.g. model=" in str(info.value)


def test_passed_object_of_the_wrong_type_is_refused(saved, toy_classes):
    with pytest.raises(ComponentTypeError, match="'scheduler' must be a ToySchedule, got a str"):
        toy_classes[0].from_pretrained(saved[1], scheduler="ddim")


def test_unknown_library_names_component_and_loadable_libraries(saved, toy_classes):
    _, folder = saved
    index = json.loads((folder / "model_index.json").read_text())
    index["model"] = ["mystery_lib", "Thing"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UnknownComponentClassError) as info:
        toy_classes[0].from_pretrained(folder)
    message = str(info.value)
    assert "'model'" in message and "mystery_lib" in message and "Thing" in message
    assert "toy-lib" in message and "transformers" in message


def test_component_subfolder_missing_from_repo(saved, toy_classes):
    _, folder = saved
    for path in (folder / "model").iterdir():
        path.unlink()
    (folder / "model").rmdir()
    with pytest.raises(EntryNotFoundError, match="'model/'.*pass model=<object>"):
        toy_classes[0].from_pretrained(folder)


def test_init_with_star_args_is_refused(tmp_path):
    class Starry(DiffusionPipeline):
        def __init__(self, *parts):
            super().__init__()

    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "Starry"}))
    with pytest.raises(ComponentError, match=r"takes \*parts"):
        Starry.from_pretrained(tmp_path)


def test_diffusion_pipeline_refuses_unknown_class_name(saved):
    with pytest.raises(PipelineNotFoundError, match="'ToyPipeline', which is not a pipeyard pipeline"):
        DiffusionPipeline.from_pretrained(saved[1])


def test_missing_model_index_says_how_to_load_a_single_model(tmp_path):
    with pytest.raises(EntryNotFoundError, match="model_index.json.*UNet2DModel.from_pretrained"):
        DiffusionPipeline.from_pretrained(tmp_path)


def test_from_pipe_reuses_the_same_objects(saved, toy_classes):
    pipe, _ = saved

    class Twin(DiffusionPipeline):
        def __init__(self, model, scheduler):
            super().__init__()
            self.register_modules(model=model, scheduler=scheduler)

    twin = Twin.from_pipe(pipe)
    assert twin.model is pipe.model and twin.scheduler is pipe.scheduler
    other = ToySchedule(1)
    assert Twin.from_pipe(pipe, scheduler=other).scheduler is other
    with pytest.raises(UnexpectedArgumentError):
        Twin.from_pipe(pipe, vae=1)


def test_to_device_and_dtype(saved):
    pipe, _ = saved
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32
    assert pipe.to(torch.float64) is pipe and pipe.model.dtype == torch.float64
    pipe.to("cpu", torch.float32)
    assert pipe.dtype == torch.float32


def test_progress_bar_honours_config(saved):
    pipe, _ = saved
    pipe.set_progress_bar_config(disable=True)
    bar = pipe.progress_bar(range(3))
    assert bar.disable and list(bar) == [0, 1, 2]
    assert pipe.progress_bar(total=5).total == 5
    with pytest.raises(ValueError, match="iterable or a total"):
        pipe.progress_bar()


def test_numpy_to_pil():
    images = np.zeros((2, 8, 8, 3), dtype=np.float32)
    images[1] = 1.0
    pils = DiffusionPipeline.numpy_to_pil(images)
    assert [p.size for p in pils] == [(8, 8), (8, 8)]
    assert pils[1].getpixel((0, 0)) == (255, 255, 255)
    assert DiffusionPipeline.numpy_to_pil(np.zeros((4, 4, 1)))[0].mode == "L"


def test_attention_slicing_is_forwarded(saved):
    pipe, _ = saved
    calls = []
    pipe.model.set_attention_slice = calls.append
    pipe.enable_attention_slicing()
    pipe.enable_attention_slicing(2)
    pipe.disable_attention_slicing()
    assert calls == ["auto", 2, None]


def test_repr_is_class_name_and_json(saved):
    text = repr(saved[0])
    assert text.startswith("ToyPipeline {")
    assert json.loads(text[len("ToyPipeline "):])["boost"] == 3.0


def test_failed_save_leaves_previous_save_intact(saved, toy_classes):
    pipe, folder = saved
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    pipe.extra = object()  # has no save_pretrained
    with pytest.raises(ComponentError, match="cannot save component 'extra'"):
        pipe.save_pretrained(folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_transformers_component_loads_with_its_dtype(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPTextConfig(
        vocab_size=99, hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1,
        max_position_embeddings=16,
    )

    class TextPipeline(DiffusionPipeline):
        def __init__(self, text_encoder):
            super().__init__()
            self.register_modules(text_encoder=text_encoder)

    pipe = TextPipeline(transformers.CLIPTextModel(config))
    assert pipe.config["text_encoder"] == ["transformers", "CLIPTextModel"]
    pipe.save_pretrained(tmp_path / "p")
    loaded = TextPipeline.from_pretrained(tmp_path / "p", torch_dtype=torch.bfloat16)
    assert loaded.text_encoder.dtype == torch.bfloat16


def test_passed_object_outside_the_model_index_family_is_refused(tmp_path):
    from pipeyard import DDIMScheduler, DDPMScheduler

    class Loose(DiffusionPipeline):
        def __init__(self, scheduler):
            super().__init__()
            self.register_modules(scheduler=scheduler)

    Loose(DDPMScheduler()).save_pretrained(tmp_path / "p")
    swapped = Loose.from_pretrained(tmp_path / "p", scheduler=DDIMScheduler())  # same family: fine
    assert isinstance(swapped.scheduler, DDIMScheduler)
    with pytest.raises(ComponentTypeError, match=r"must be a SchedulerMixin \(model_index.json names DDPMScheduler\), got a str"):
        Loose.from_pretrained(tmp_path / "p", scheduler="ddim")

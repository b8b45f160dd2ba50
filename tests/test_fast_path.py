"""Fast path: fused attention projections and CUDA-graph replay (bookkeeping on CPU, replay on CUDA)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn import functional as F

import pipeyard
from pipeyard.cuda_graph import GraphedModule
from pipeyard.errors import PipeyardWarning
from pipeyard.models.attention import Attention

TINY_COND_UNET = dict(
    sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
TINY_UNET = dict(
    sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# ---------------------------------------------------------------------- fused projections


def _unfused(attn: Attention, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
    """Reference attention with three separate projections."""
    context = tokens if context is None else context
    heads = attn.heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(attn.to_q(tokens)), split(attn.to_k(context)), split(attn.to_v(context))
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
    return attn.to_out[0](out)


def _attention(cross: int | None = None) -> Attention:
    torch.manual_seed(0)
    return Attention(16, heads=4, dim_head=4, cross_attention_dim=cross).eval()


@pytest.mark.parametrize("cross", [None, 12], ids=["self", "cross"])
@torch.no_grad()
def test_fused_projections_equal_separate_ones(cross: int | None) -> None:
    attn = _attention(cross)
    tokens = torch.randn(2, 9, 16)
    context = None if cross is None else torch.randn(2, 5, cross)
    torch.testing.assert_close(attn(tokens, context), _unfused(attn, tokens, context), rtol=1e-6, atol=1e-6)


def test_fused_attention_keeps_diffusers_state_dict_keys() -> None:
    keys = set(_attention().state_dict())
    assert keys == {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias"}


@torch.no_grad()
def test_fused_weight_is_cached_until_a_weight_changes() -> None:
    attn, tokens = _attention(), torch.randn(1, 4, 16)
    attn(tokens)
    cached = attn._qkv._weight
    attn(tokens)
    assert attn._qkv._weight is cached  # hit: nothing changed
    attn.to_k.weight.mul_(2.0)  # in-place edit bumps the version counter
    torch.testing.assert_close(attn(tokens), _unfused(attn, tokens), rtol=1e-6, atol=1e-6)
    assert attn._qkv._weight is not cached


@torch.no_grad()
def test_fused_weight_follows_load_state_dict_and_dtype() -> None:
    attn, other, tokens = _attention(), Attention(16, heads=4, dim_head=4).eval(), torch.randn(1, 4, 16)
    attn(tokens)
    attn.load_state_dict(other.state_dict())
    torch.testing.assert_close(attn(tokens), _unfused(other, tokens), rtol=1e-6, atol=1e-6)
    attn.to(torch.float64)
    out = attn(tokens.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _unfused(attn, tokens.double()))


def test_weights_moved_under_inference_mode_are_fused_without_cache() -> None:
    attn, tokens = _attention(), torch.randn(1, 4, 16)
    with torch.inference_mode():
        attn.to(torch.float64)  # parameters become inference tensors
        torch.testing.assert_close(attn(tokens.double()), _unfused(attn, tokens.double()))
    assert attn._qkv._weight is None


def test_fused_projections_pass_gradients_to_every_layer() -> None:
    attn, tokens = _attention(), torch.randn(1, 4, 16, requires_grad=True)
    attn(tokens).sum().backward()
    assert all(layer.weight.grad is not None for layer in (attn.to_q, attn.to_k, attn.to_v))
    assert tokens.grad is not None


@torch.no_grad()
def test_replaced_projection_layer_is_called_not_fused() -> None:
    attn, tokens = _attention(), torch.randn(1, 4, 16)
    expected = _unfused(attn, tokens)
    attn.to_v = torch.nn.Sequential(attn.to_v)  # e.g. an adapter around the layer
    torch.testing.assert_close(attn(tokens), expected, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- graph runner on CPU


class RecordingCapture:
    """A capture that reruns the call on its static inputs (what a graph replay computes)."""

    def __init__(self) -> None:
        self.captured: list[tuple[Any, ...]] = []

    def __call__(self, call: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.captured.append(tuple(a.shape for a in args if isinstance(a, torch.Tensor)))
        return lambda: call(*args, **kwargs)


def _cond_unet() -> pipeyard.UNet2DConditionModel:
    torch.manual_seed(0)
    return pipeyard.UNet2DConditionModel(**TINY_COND_UNET).eval()


def _cond_inputs(batch: int = 2, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 4, size, size), torch.randn(batch, 5, 16)


def _graphed(max_graphs: int = 2) -> tuple[GraphedModule, RecordingCapture]:
    capture = RecordingCapture()
    return GraphedModule(_cond_unet(), max_graphs, capture=capture, require_cuda=False), capture


@torch.no_grad()
def test_runner_captures_once_per_shape_and_replays_fresh_inputs() -> None:
    graphed, capture = _graphed()
    for step, t in enumerate([900, 500, 100]):  # python ints: one graph for every timestep
        sample, context = _cond_inputs()
        got = graphed(sample, t, encoder_hidden_states=context).sample
        torch.testing.assert_close(got, graphed.module(sample, t, encoder_hidden_states=context).sample, rtol=0, atol=0)
    assert (graphed.misses, graphed.hits, len(capture.captured)) == (1, 2, 1)


@torch.no_grad()
def test_runner_returns_clones_not_its_static_output() -> None:
    graphed, _ = _graphed()
    first = graphed(*_cond_inputs()[:1], 10, encoder_hidden_states=_cond_inputs()[1]).sample
    kept = first.clone()
    graphed(*_cond_inputs()[:1], 20, encoder_hidden_states=_cond_inputs()[1])
    assert torch.equal(first, kept)


@torch.no_grad()
def test_runner_evicts_least_recently_used_shape() -> None:
    graphed, capture = _graphed(max_graphs=2)
    for batch in (1, 2, 1, 3, 2):  # 1, 2 captured; 1 hit; 3 evicts 2; 2 evicts 1
        sample, context = _cond_inputs(batch)
        graphed(sample, 5, encoder_hidden_states=context)
    assert (graphed.misses, graphed.hits, graphed.evictions, graphed.graph_count) == (4, 1, 2, 2)
    assert [shape[0][0] for shape in capture.captured] == [1, 2, 3, 2]


def test_runner_captured_under_inference_mode_replays_under_no_grad() -> None:
    graphed, _ = _graphed()
    sample, context = _cond_inputs()
    with torch.inference_mode():
        graphed(sample, 5, encoder_hidden_states=context)
    with torch.no_grad():
        got = graphed(sample * 2, 5, encoder_hidden_states=context).sample
        assert torch.equal(got, graphed.module(sample * 2, 5, encoder_hidden_states=context).sample)
    assert graphed.hits == 1


def test_runner_can_be_copied() -> None:
    import copy

    graphed, _ = _graphed()
    assert copy.copy(graphed).module is graphed.module


@torch.no_grad()
def test_runner_keys_on_static_arguments_too() -> None:
    graphed, _ = _graphed(max_graphs=4)
    sample, context = _cond_inputs()
    graphed(sample, 5, encoder_hidden_states=context)
    out = graphed(sample, 5, encoder_hidden_states=context, return_dict=False)
    assert isinstance(out, tuple) and graphed.misses == 2


@torch.no_grad()
def test_clear_frees_graphs_and_proxy_forwards_attributes() -> None:
    graphed, _ = _graphed()
    graphed(*_cond_inputs()[:1], 5, encoder_hidden_states=_cond_inputs()[1])
    assert graphed.config.in_channels == 4 and graphed.dtype == torch.float32
    graphed.clear()
    assert graphed.graph_count == 0


@torch.no_grad()
def test_cpu_falls_back_to_eager_with_one_warning() -> None:
    unet = _cond_unet()
    graphed = GraphedModule(unet)  # real CUDA capture requested, CPU inputs given
    sample, context = _cond_inputs()
    with pytest.warns(PipeyardWarning, match="CUDA graphs off, running UNet2DConditionModel eagerly"):
        first = graphed(sample, 3, encoder_hidden_states=context).sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = graphed(sample, 3, encoder_hidden_states=context).sample
    assert torch.equal(first, unet(sample, 3, encoder_hidden_states=context).sample) and torch.equal(first, second)
    assert graphed.graph_count == 0


def test_autograd_on_runs_eagerly_with_the_reason() -> None:
    graphed, capture = _graphed()
    with pytest.warns(PipeyardWarning, match="autograd is on"):
        graphed(*_cond_inputs()[:1], 3, encoder_hidden_states=_cond_inputs()[1])
    assert capture.captured == []


@torch.no_grad()
def test_capture_error_warns_once_and_stays_eager() -> None:
    def failing(call: Any, args: Any, kwargs: Any) -> Any:
        raise RuntimeError("operation not permitted when stream is capturing")

    graphed = GraphedModule(_cond_unet(), capture=failing, require_cuda=False)
    sample, context = _cond_inputs()
    with pytest.warns(PipeyardWarning, match="capture failed .RuntimeError: operation not permitted"):
        graphed(sample, 3, encoder_hidden_states=context)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = graphed(sample, 3, encoder_hidden_states=context).sample
    assert torch.equal(out, graphed.module(sample, 3, encoder_hidden_states=context).sample)
    assert graphed.misses == 1  # no second capture attempt


@torch.no_grad()
def test_compile_flag_never_compiles_on_the_eager_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("torch.compile called on CPU fallback"))
    graphed = GraphedModule(_cond_unet(), compile=True)
    with pytest.warns(PipeyardWarning, match="eagerly"):
        graphed(*_cond_inputs()[:1], 3, encoder_hidden_states=_cond_inputs()[1])


@torch.no_grad()
def test_compile_flag_captures_the_compiled_module(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[Any] = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    capture = RecordingCapture()
    graphed = GraphedModule(_cond_unet(), compile=True, capture=capture, require_cuda=False)
    for batch in (1, 2):
        graphed(*_cond_inputs(batch)[:1], 3, encoder_hidden_states=_cond_inputs(batch)[1])
    assert compiled == [graphed.module] and len(capture.captured) == 2  # compiled once


# ---------------------------------------------------------------------- pipelines


def _ddpm_pipeline() -> pipeyard.DDPMPipeline:
    torch.manual_seed(0)
    pipe = pipeyard.DDPMPipeline(unet=pipeyard.UNet2DModel(**TINY_UNET).eval(), scheduler=pipeyard.DDPMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_enable_cuda_graph_wraps_unet_but_components_and_config_see_the_real_one(tmp_path: Path) -> None:
    pipe = _ddpm_pipeline()
    real = pipe.unet
    pipe.enable_cuda_graph(max_graphs=3)
    assert isinstance(pipe.unet, GraphedModule) and pipe.unet.max_graphs == 3
    assert pipe.components["unet"] is real and pipe.config["unet"] == ["pipeyard", "UNet2DModel"]
    pipe.save_pretrained(tmp_path / "saved")
    loaded = pipeyard.DDPMPipeline.from_pretrained(tmp_path / "saved")
    assert type(loaded.unet) is pipeyard.UNet2DModel
    assert loaded.unet.state_dict().keys() == real.state_dict().keys()
    pipe.disable_cuda_graph()
    assert pipe.unet is real


def test_enable_cuda_graph_on_cpu_gives_eager_images_with_one_warning() -> None:
    pipe = _ddpm_pipeline()
    expected = pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
    pipe.enable_cuda_graph()
    with pytest.warns(PipeyardWarning, match="CUDA is not available|not CUDA tensors") as record:
        got = pipe(generator=torch.Generator().manual_seed(0), num_inference_steps=3, output_type="np").images
    assert len(record) == 1
    assert (got == expected).all()


def test_cuda_graph_call_option_enables_then_disables_graphs() -> None:
    pipe = _ddpm_pipeline()
    real = pipe.unet
    expected = pipe(generator=torch.Generator().manual_seed(1), num_inference_steps=2, output_type="np").images
    with pytest.warns(PipeyardWarning, match="CUDA is not available|not CUDA tensors"):
        got = pipe(generator=torch.Generator().manual_seed(1), num_inference_steps=2, output_type="np", cuda_graph=True).images
    assert isinstance(pipe.unet, GraphedModule) and (got == expected).all()
    pipe(num_inference_steps=1, output_type="np")  # None: graphs stay on (already warned)
    assert isinstance(pipe.unet, GraphedModule)
    pipe(num_inference_steps=1, output_type="np", cuda_graph=False)
    assert pipe.unet is real


def test_enable_cuda_graph_refuses_a_missing_component() -> None:
    with pytest.raises(pipeyard.errors.ComponentError, match="no 'transformer' component"):
        _ddpm_pipeline().enable_cuda_graph(component="transformer")


@pytest.mark.parametrize("change", ["to", "attention_slicing"])
def test_pipeline_changes_that_alter_the_forward_clear_graphs(change: str) -> None:
    pipe = _ddpm_pipeline()
    pipe.enable_cuda_graph()
    pipe.unet._graphs["stale"] = object()
    pipe.to(torch.float32) if change == "to" else pipe.enable_attention_slicing("max")
    assert pipe.unet.graph_count == 0


def test_from_pipe_of_a_graphed_pipeline_gets_the_real_unet() -> None:
    pipe = _ddpm_pipeline()
    pipe.enable_cuda_graph()
    other = pipeyard.DDIMPipeline.from_pipe(pipe, scheduler=pipeyard.DDIMScheduler())
    assert other.unet is pipe.components["unet"]


# ---------------------------------------------------------------------- real CUDA graphs


@pytest.mark.cuda
@needs_cuda
@torch.no_grad()
def test_cuda_graph_replay_equals_eager_bitwise() -> None:
    unet = _cond_unet().cuda()
    graphed = GraphedModule(unet)
    for batch in (2, 2, 1, 2):
        sample, context = (x.cuda() for x in _cond_inputs(batch))
        expected = unet(sample, torch.tensor(7), encoder_hidden_states=context).sample
        got = graphed(sample, torch.tensor(7), encoder_hidden_states=context).sample
        assert torch.equal(got, expected)
    assert (graphed.misses, graphed.hits) == (2, 2)


@pytest.mark.cuda
@needs_cuda
def test_cuda_graph_pipeline_images_equal_eager() -> None:
    pipe = _ddpm_pipeline().to("cuda")
    expected = pipe(generator=torch.Generator("cuda").manual_seed(0), num_inference_steps=4, output_type="np").images
    pipe.enable_cuda_graph()
    got = pipe(generator=torch.Generator("cuda").manual_seed(0), num_inference_steps=4, output_type="np").images
    assert pipe.unet.misses == 1 and pipe.unet.hits == 3
    assert (got == expected).all()

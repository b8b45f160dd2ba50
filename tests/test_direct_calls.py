"""Direct calls of plain layers and per-call shared projections (``pipeyard.models.direct``,
``pipeyard.models.fused.PerCallProjections``): same numbers as module calls, and every hook,
replaced layer or wrapper still runs."""

from __future__ import annotations

import collections
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import pipeyard
from pipeyard.models import direct
from pipeyard.models.fused import PerCallProjections, precomputed
from pipeyard.models.resnet import ResnetBlock2D

TINY_COND_UNET = dict(
    sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
    attention_head_dim=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)


def _unet() -> pipeyard.UNet2DConditionModel:
    torch.manual_seed(0)
    return pipeyard.UNet2DConditionModel(**TINY_COND_UNET).eval()


def _inputs() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    return {
        "sample": torch.randn(2, 4, 8, 8, generator=generator),
        "timestep": 10,
        "encoder_hidden_states": torch.randn(2, 5, 16, generator=generator),
    }


def _run(unet: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return unet(**_inputs()).sample


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------------- leaf helpers

LEAVES = [
    (direct.linear, nn.Linear(6, 5), (2, 3, 6)),
    (direct.conv2d, nn.Conv2d(4, 8, 3, stride=2, padding=1), (2, 4, 9, 9)),
    (direct.group_norm, nn.GroupNorm(2, 4), (2, 4, 5, 5)),
    (direct.layer_norm, nn.LayerNorm(6), (2, 3, 6)),
    (direct.activation, nn.SiLU(), (2, 3, 6)),
]


@pytest.mark.parametrize(("helper", "layer", "shape"), LEAVES, ids=lambda v: getattr(v, "__name__", ""))
def test_helpers_are_bitwise_equal_to_the_module_call(helper: Any, layer: nn.Module, shape: tuple[int, ...]) -> None:
    inputs = torch.randn(shape)
    assert direct.is_direct(layer, type(layer))
    assert torch.equal(helper(layer, inputs), layer(inputs))


@pytest.mark.parametrize(("helper", "layer", "shape"), LEAVES, ids=lambda v: getattr(v, "__name__", ""))
def test_helpers_call_a_hooked_layer_as_a_module(helper: Any, layer: nn.Module, shape: tuple[int, ...]) -> None:
    handle = layer.register_forward_hook(lambda module, args, output: output * 0)
    try:
        assert not direct.is_direct(layer, type(layer))
        assert (helper(layer, torch.randn(shape)) == 0).all()
    finally:
        handle.remove()


def test_a_global_module_hook_makes_every_helper_step_aside() -> None:
    seen: list[str] = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, a, o: seen.append(type(m).__name__))
    try:
        for helper, layer, shape in LEAVES:
            helper(layer, torch.randn(shape))
        direct.call(nn.Identity(), torch.ones(1))
    finally:
        handle.remove()
    assert seen == ["Linear", "Conv2d", "GroupNorm", "LayerNorm", "SiLU", "Identity"]


def test_replaced_or_wrapped_layers_are_called() -> None:
    class Adapter(nn.Linear):  # e.g. a LoRA layer: a subclass, not the plain class
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return super().forward(inputs) + 1

    adapter = Adapter(4, 4)
    inputs = torch.randn(2, 4)
    assert torch.equal(direct.linear(adapter, inputs), adapter(inputs))
    wrapped = nn.Linear(4, 4)
    original = wrapped.forward
    wrapped.forward = lambda x: original(x) * 2  # type: ignore[method-assign]  # accelerate-style
    assert torch.equal(direct.linear(wrapped, inputs), original(inputs) * 2)
    reflect = nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect")
    image = torch.randn(1, 2, 5, 5)
    assert torch.equal(direct.conv2d(reflect, image), reflect(image))
    inplace = nn.SiLU(inplace=True)
    values = torch.randn(3)
    assert direct.activation(inplace, values) is values  # the module ran, in place


def test_call_runs_hooks_of_composite_modules() -> None:
    unet = _unet()
    expected = _run(unet)
    calls: list[str] = []
    block = unet.down_blocks[0].attentions[0].transformer_blocks[0]
    block.register_forward_pre_hook(lambda module, args: calls.append("pre"))
    block.ff.register_forward_hook(lambda module, args, output: calls.append("ff"))
    assert torch.equal(_run(unet), expected)
    assert calls == ["pre", "ff"]


def test_hooks_inside_the_unet_see_and_change_the_call() -> None:
    unet = _unet()
    expected = _run(unet)
    resnet = unet.up_blocks[0].resnets[0]
    seen = []
    resnet.conv1.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    assert torch.equal(_run(unet), expected) and seen == [torch.Size([2, 32, 4, 4])]
    resnet.norm2.register_forward_hook(lambda module, args, output: output * 0)
    assert not torch.allclose(_run(unet), expected)


# ---------------------------------------------------------------------- per-call projections


TINY_UNET = dict(
    sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)


@pytest.mark.parametrize("conditional", [True, False], ids=["UNet2DConditionModel", "UNet2DModel"])
def test_time_and_context_projections_run_as_one_matmul_each(conditional: bool) -> None:
    torch.manual_seed(0)
    unet = _unet() if conditional else pipeyard.UNet2DModel(**TINY_UNET).eval()
    inputs = _inputs() if conditional else {"sample": torch.randn(1, 3, 8, 8), "timestep": 3}
    counter = _OpCounter()
    with torch.inference_mode(), counter:  # ops as called (no autograd decomposition)
        unet(**inputs)
    modules = list(unet.modules())
    resnets = sum(isinstance(m, ResnetBlock2D) for m in modules)
    cross = sum(getattr(m, "is_cross_attention", False) for m in modules)
    self_attention = sum(getattr(m, "is_cross_attention", True) is False for m in modules)
    assert resnets > 1 and self_attention > 0 and (cross > 1 or not conditional)
    # all resnets' time_emb_proj: one matmul; all cross-attention to_k/to_v: one matmul;
    # each self-attention's to_q/to_k/to_v: one matmul
    expected = sum(isinstance(m, nn.Linear) for m in modules) - (resnets - 1) - 2 * self_attention
    expected -= 2 * cross - 1 if conditional else 0
    assert counter.counts["aten.linear"] == expected


def test_per_call_projections_give_the_numbers_of_separate_layers(monkeypatch: pytest.MonkeyPatch) -> None:
    unet = _unet()
    fused = _run(unet)
    for projections in (unet._time_projections, unet._context_projections):
        monkeypatch.setattr(projections, "open", lambda inputs: None)  # every layer computes its own
    separate = _run(unet)
    torch.testing.assert_close(fused, separate, rtol=1e-6, atol=1e-6)


def test_per_call_scope_is_closed_after_the_call_and_after_an_error() -> None:
    unet = _unet()
    _run(unet)
    assert unet._time_projections._scope is None and unet._context_projections._scope is None  # type: ignore[union-attr]

    def fail(module: nn.Module, args: Any) -> None:
        raise RuntimeError("boom")

    unet.mid_block.register_forward_pre_hook(fail)  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="boom"):
        _run(unet)
    assert unet._time_projections._scope is None and unet._context_projections._scope is None  # type: ignore[union-attr]


def test_a_layer_outside_the_scope_or_with_other_inputs_computes_its_own() -> None:
    torch.manual_seed(0)
    resnets = [ResnetBlock2D(in_channels=4, out_channels=4, temb_channels=6, groups=2, temb_activated=True) for _ in range(2)]
    shared = PerCallProjections(resnets, ["time_emb_proj"])
    emb, other = torch.randn(1, 6), torch.randn(1, 6)
    assert precomputed(resnets[0], emb) is None  # no scope open
    shared.open(emb)
    assert torch.equal(precomputed(resnets[1], emb), resnets[1].time_emb_proj(emb))  # type: ignore[arg-type]
    assert precomputed(resnets[1], other) is None  # another tensor: the layer runs itself
    shared.close()
    assert precomputed(resnets[1], emb) is None


def test_a_hooked_time_projection_turns_the_shared_matmul_off() -> None:
    unet = _unet()
    expected = _run(unet)
    calls = []
    unet.down_blocks[1].resnets[0].time_emb_proj.register_forward_hook(lambda m, a, o: calls.append(o.shape))
    torch.testing.assert_close(_run(unet), expected, rtol=1e-6, atol=1e-6)
    assert calls == [torch.Size([2, 32])]


def test_gradients_reach_every_layer_through_the_shared_matmuls() -> None:
    unet = _unet().train()
    unet(**_inputs()).sample.square().mean().backward()
    for module in unet.modules():
        if isinstance(module, ResnetBlock2D):
            assert module.time_emb_proj.weight.grad is not None  # type: ignore[union-attr]
        if getattr(module, "is_cross_attention", False):
            assert module.to_k.weight.grad is not None and module.to_v.weight.grad is not None


def test_a_deep_copy_fuses_its_own_layers() -> None:
    import copy

    unet = _unet()
    expected = _run(unet)
    twin = copy.deepcopy(unet)
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, ResnetBlock2D):
                module.time_emb_proj.weight.zero_()  # type: ignore[union-attr]
    assert not torch.allclose(_run(unet), expected)
    torch.testing.assert_close(_run(twin), expected, rtol=0, atol=0)


@pytest.mark.parametrize("conditional", [True, False], ids=["UNet2DConditionModel", "UNet2DModel"])
def test_torch_compile_traces_the_unet_in_one_graph(conditional: bool) -> None:
    torch.manual_seed(0)
    unet = _unet() if conditional else pipeyard.UNet2DModel(**TINY_UNET).eval()
    inputs = _inputs() if conditional else {"sample": torch.randn(1, 3, 8, 8), "timestep": torch.tensor(3)}
    if conditional:
        inputs["timestep"] = torch.tensor(inputs["timestep"])
    torch._dynamo.reset()
    with torch.no_grad():
        expected = unet(**inputs).sample
        explanation = torch._dynamo.explain(unet)(**inputs)
        compiled = torch.compile(unet, backend="eager")(**inputs).sample
    torch._dynamo.reset()
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
    torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5)

"""diffusers' attention-processor protocol on pipeyard's models, with diffusers as the oracle.

The processors here are written the way community pipelines write theirs (prompt-to-prompt,
PAG, reference-only): they read ``attn.to_q`` ..., call the layer's helpers, and are set with
``set_attn_processor`` or by assigning ``layer.processor``.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from pipeyard import errors
from pipeyard.models import attention as attention_module
from pipeyard.models.attention import Attention
from pipeyard.models.attention_processor import AttnProcessor, AttnProcessor2_0, FusedAttnProcessor2_0
from pipeyard.models.autoencoder_kl import AutoencoderKL
from pipeyard.models.transformer_2d import BasicTransformerBlock, FeedForward
from pipeyard.models.unet_2d import UNet2DModel
from pipeyard.models.unet_2d_condition import UNet2DConditionModel

diffusers = pytest.importorskip("diffusers")

SD = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    norm_num_groups=8, cross_attention_dim=24, attention_head_dim=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
)
DDPM = dict(
    block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=3, out_channels=3,
    norm_num_groups=8, attention_head_dim=8,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
)
VAE = dict(
    block_out_channels=(16, 32), norm_num_groups=8, latent_channels=4,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"), up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
)


def _pair(oracle, ours_class, reference_class, config):
    torch.manual_seed(0)
    reference = reference_class(**config).eval()
    return reference, ours_class.from_pretrained(oracle.save(reference)).eval()


@pytest.fixture
def unets(oracle):
    return _pair(oracle, UNet2DConditionModel, diffusers.UNet2DConditionModel, SD)


def _sd_inputs(batch: int = 2, masked: bool = False) -> dict:
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "sample": torch.randn(batch, 4, 16, 16, generator=generator),
        "timestep": torch.tensor([10, 900][:batch]),
        "encoder_hidden_states": torch.randn(batch, 7, 24, generator=generator),
    }
    if masked:
        inputs["encoder_attention_mask"] = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * batch)
    return inputs


class Recorder:
    """Records every call (layer name, inputs, extra kwargs), then runs ``inner``."""

    def __init__(self, inner, names: dict[int, str]) -> None:
        self.inner = inner
        self.names = names
        self.calls: list[tuple] = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, token_weight=None):
        self.calls.append((self.names[id(attn)], hidden_states, encoder_hidden_states, attention_mask, temb, token_weight))
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def _record(model, inner) -> Recorder:
    recorder = Recorder(inner, {id(m): name for name, m in model.named_modules()})
    for layer in model.modules():  # diffusers' UNet2DModel has no set_attn_processor: per layer
        if hasattr(layer, "set_processor"):
            layer.set_processor(recorder)
    return recorder


def _processor_keys(model) -> list[str]:
    return [f"{name}.processor" for name, layer in model.named_modules() if hasattr(layer, "get_processor")]


def _assert_same_calls(expected: Recorder, got: Recorder) -> None:
    assert len(got.calls) == len(expected.calls) > 0
    for want, have in zip(expected.calls, got.calls):
        assert have[0] == want[0]  # the same layer, in the same order
        for a, b in zip(want[1:], have[1:]):
            if isinstance(a, torch.Tensor):
                assert isinstance(b, torch.Tensor) and a.shape == b.shape, want[0]
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=want[0])
            else:
                assert b == a, want[0]


# ---------------------------------------------------------------------- the model API


@pytest.mark.parametrize(
    ("ours_class", "reference_name", "config"),
    [(UNet2DConditionModel, "UNet2DConditionModel", SD), (UNet2DModel, "UNet2DModel", DDPM), (AutoencoderKL, "AutoencoderKL", VAE)],
)
def test_attn_processors_has_diffusers_keys_in_diffusers_order(oracle, ours_class, reference_name, config):
    reference, ours = _pair(oracle, ours_class, getattr(diffusers, reference_name), config)
    assert list(ours.attn_processors) == _processor_keys(reference)
    if hasattr(reference, "attn_processors"):  # diffusers' UNet2DModel has none; pipeyard's has
        assert list(ours.attn_processors) == list(reference.attn_processors)
    assert {type(p).__name__ for p in ours.attn_processors.values()} == {"AttnProcessor2_0"}


@torch.no_grad()
def test_recording_processor_sees_what_diffusers_gives_it_in_a_conditional_unet(unets):
    from diffusers.models import attention_processor as reference_processors

    reference, ours = unets
    inputs = _sd_inputs(masked=True)
    kwargs = {"cross_attention_kwargs": {"token_weight": 2.0, "scale": 1.0}}
    expected = _record(reference, reference_processors.AttnProcessor2_0())
    got = _record(ours, AttnProcessor2_0())
    want = reference(**inputs, **kwargs).sample
    have = ours(**inputs, **kwargs).sample
    _assert_same_calls(expected, got)
    assert {call[5] for call in got.calls} == {2.0}  # the kwarg reached every processor, scale did not
    assert got.calls[0][0] == "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
    torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("slice_size", [1, 3, 64])
@torch.no_grad()
def test_sliced_attn_processor_equals_diffusers(unets, slice_size):
    from diffusers.models import attention_processor as reference_processors

    from pipeyard.models.attention_processor import SlicedAttnProcessor

    reference, ours = unets
    reference.set_attn_processor(reference_processors.SlicedAttnProcessor(slice_size))
    ours.set_attn_processor(SlicedAttnProcessor(slice_size))
    inputs = _sd_inputs(masked=True)
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("processor", ["AttnProcessor", "AttnProcessor2_0"])
@torch.no_grad()
def test_recording_processor_sees_the_self_attention_mask_as_diffusers_gives_it(oracle, processor):
    from diffusers.models import attention_processor as reference_processors

    config = {**SD, "mid_block_type": None}  # one resolution with attention: 256 tokens everywhere
    reference, ours = _pair(oracle, UNet2DConditionModel, diffusers.UNet2DConditionModel, config)
    inputs = {**_sd_inputs(masked=True), "attention_mask": (torch.arange(256) % 5 != 0).float().repeat(2, 1)}
    expected = _record(reference, getattr(reference_processors, processor)())
    got = _record(ours, {"AttnProcessor": AttnProcessor, "AttnProcessor2_0": AttnProcessor2_0}[processor]())
    want, have = reference(**inputs).sample, ours(**inputs).sample
    _assert_same_calls(expected, got)
    assert got.calls[0][3] is not None and got.calls[0][3].shape == (2, 1, 256)  # attn1 gets the bias
    torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("ours_class", "reference_name", "config"), [(UNet2DModel, "UNet2DModel", DDPM), (AutoencoderKL, "AutoencoderKL", VAE)])
@torch.no_grad()
def test_recording_processor_sees_what_diffusers_gives_it_in_spatial_attention(oracle, ours_class, reference_name, config):
    from diffusers.models import attention_processor as reference_processors

    reference, ours = _pair(oracle, ours_class, getattr(diffusers, reference_name), config)
    expected = _record(reference, reference_processors.AttnProcessor())
    got = _record(ours, AttnProcessor())
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    if ours_class is UNet2DModel:
        want, have = reference(sample, 10).sample, ours(sample, 10).sample
    else:
        want, have = reference(sample).sample, ours(sample).sample
    if ours_class is UNet2DModel:  # the one documented difference: blocks get act(temb), once per call
        expected.calls = [(*c[:4], None if c[4] is None else torch.nn.functional.silu(c[4]), c[5]) for c in expected.calls]
    assert any(c[4] is not None for c in got.calls) == (ours_class is UNet2DModel)
    _assert_same_calls(expected, got)  # 4-d hidden states; the mid block's temb where diffusers passes it
    torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5)


class EditingProcessor:
    """Prompt-to-prompt's shape: the layer's helpers, attention probabilities edited in between."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None):
        batch, length, _ = hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        probs[..., 0] *= 1.5  # the edit
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


@torch.no_grad()
def test_processor_editing_attention_probabilities_matches_diffusers(unets):
    reference, ours = unets
    reference.set_attn_processor({name: EditingProcessor() for name in reference.attn_processors})
    ours.set_attn_processor({name: EditingProcessor() for name in ours.attn_processors})
    inputs = _sd_inputs()
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)


class IdentitySelfAttention:
    """PAG's perturbation: self-attention replaced by the identity (``out = to_out(to_v(x))``)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        return attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))


@torch.no_grad()
def test_processor_assigned_to_a_layer_attribute_changes_only_that_layer(unets, monkeypatch):
    reference, ours = unets
    for model in (reference, ours):  # as PAG picks its layers
        layers = [m for name, m in model.named_modules() if "attn1" in name and "to" not in name]
        mid = [m for name, m in model.named_modules() if name.startswith("mid") and name.endswith("attn1")]
        assert len(layers) == 4 and len(mid) == 1
        mid[0].processor = IdentitySelfAttention()
    fast = []
    original = Attention._attend
    monkeypatch.setattr(Attention, "_attend", lambda self, *a: fast.append(self) or original(self, *a))
    inputs = _sd_inputs()
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)
    assert len(fast) == len(ours.attn_processors) - 1  # every other layer kept the fast path
    assert ours.attn_processors["mid_block.attentions.0.transformer_blocks.0.attn1.processor"].__class__ is IdentitySelfAttention


def test_a_custom_processor_on_a_cross_attention_layer_turns_off_the_shared_key_matmul(unets):
    _, ours = unets
    projections = ours._context_projections
    assert projections._all_take_part()
    ours.up_blocks[1].attentions[0].transformer_blocks[0].attn2.set_processor(AttnProcessor())
    assert not projections._all_take_part()
    ours.set_attn_processor(AttnProcessor2_0())
    assert projections._all_take_part()


@torch.no_grad()
def test_set_default_attn_processor_puts_back_attn_processor_like_diffusers(unets):
    reference, ours = unets
    ours.set_attn_processor(EditingProcessor())
    with pytest.raises(errors.AttentionProcessorError, match="EditingProcessor") as info:
        ours.set_default_attn_processor()
    assert isinstance(info.value, ValueError) and "set_attn_processor" in str(info.value)
    ours.set_attn_processor(AttnProcessor2_0())
    ours.set_default_attn_processor()
    reference.set_default_attn_processor()
    assert {type(p).__name__ for p in ours.attn_processors.values()} == {"AttnProcessor"}
    inputs = _sd_inputs(masked=True)
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)


def test_a_processor_dict_that_misses_layers_is_refused_with_the_keys(unets):
    _, ours = unets
    processors = dict(ours.attn_processors)
    missing = processors.popitem()[0]
    processors["down_blocks.9.attn1.processor"] = AttnProcessor()
    with pytest.raises(errors.AttentionProcessorError) as info:
        ours.set_attn_processor(processors)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert missing in message and "down_blocks.9.attn1.processor" in message
    assert f"exactly the {len(ours.attn_processors)} keys of model.attn_processors" in message


@torch.no_grad()
def test_fused_qkv_processor_matches_diffusers_and_needs_fused_layers(unets):
    reference, ours = unets
    ours.set_attn_processor(FusedAttnProcessor2_0())
    with pytest.raises(errors.AttentionProcessorError, match="fuse_qkv_projections"):
        ours(**_sd_inputs())
    ours.fuse_qkv_projections()
    reference.fuse_qkv_projections()
    reference.set_attn_processor(diffusers.models.attention_processor.FusedAttnProcessor2_0())
    inputs = _sd_inputs()
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)
    ours.unfuse_qkv_projections()
    assert not any(name.endswith(("to_qkv", "to_kv")) for name, _ in ours.named_modules())


# ---------------------------------------------------------------------- the layer API


def _attention_pair(**kwargs):
    from diffusers.models.attention_processor import Attention as ReferenceAttention

    torch.manual_seed(0)
    reference = ReferenceAttention(16, heads=2, dim_head=8, **kwargs)
    ours = Attention(16, heads=2, dim_head=8, **kwargs)
    ours.load_state_dict(reference.state_dict())
    return reference, ours


def test_attention_attributes_and_helpers_match_diffusers():
    reference, ours = _attention_pair(cross_attention_dim=12, upcast_attention=True)
    for name in ("heads", "scale", "is_cross_attention", "upcast_attention", "upcast_softmax", "residual_connection",
                 "rescale_output_factor", "only_cross_attention", "norm_cross", "spatial_norm", "group_norm",
                 "inner_dim", "cross_attention_dim", "sliceable_head_dim"):
        assert getattr(ours, name) == getattr(reference, name), name
    assert [type(m) for m in ours.to_out] == [type(m) for m in reference.to_out]
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randn(2, 5, 16, generator=generator)
    keys = torch.randn(4, 3, 8, generator=generator)
    mask = torch.randn(2, 1, 3, generator=generator)
    for method, args in [
        ("head_to_batch_dim", (tokens,)), ("head_to_batch_dim", (tokens, 4)), ("batch_to_head_dim", (keys,)),
        ("prepare_attention_mask", (mask, 3, 2)), ("prepare_attention_mask", (mask, 4, 2)),
        ("prepare_attention_mask", (mask, 3, 2, 4)), ("get_attention_scores", (keys, keys, None)),
        ("get_attention_scores", (keys, keys, torch.randn(4, 3, 3, generator=generator))),
    ]:
        torch.testing.assert_close(getattr(ours, method)(*args), getattr(reference, method)(*args), msg=method)


def test_attention_takes_diffusers_positional_arguments_and_refuses_other_families():
    layer = Attention(16, 12, 2, None, 8, 0.0, True)  # query, cross, heads, kv_heads, dim_head, dropout, bias
    assert (layer.heads, layer.to_k.in_features, layer.to_q.out_features, layer.use_bias) == (2, 12, 16, True)
    with pytest.raises(errors.ModelConfigError, match="qk_norm") as info:
        Attention(16, qk_norm="rms_norm")
    assert isinstance(info.value, ValueError) and "None" in str(info.value)


def test_module_processor_is_a_submodule_until_replaced():
    _, ours = _attention_pair()
    learned = torch.nn.Linear(2, 2)
    ours.set_processor(learned)
    assert ours.get_processor() is learned and "processor" in dict(ours.named_children())
    ours.set_processor(AttnProcessor2_0())
    assert "processor" not in dict(ours.named_children()) and ours.uses_fast_path()


def test_unknown_cross_attention_kwargs_are_logged_and_dropped(caplog):
    _, ours = _attention_pair()
    seen = {}

    def processor(attn, hidden_states, encoder_hidden_states=None, attention_mask=None, wanted=None):
        seen["wanted"] = wanted
        return hidden_states

    ours.set_processor(processor)
    with caplog.at_level("WARNING", logger=attention_module.__name__.replace("attention", "attention_processor")):
        ours(torch.randn(1, 3, 16), wanted=1, unwanted=2)
    assert seen == {"wanted": 1}
    assert "unwanted" in caplog.text and "wanted" in caplog.text


@torch.no_grad()
def test_transformer_block_and_feed_forward_take_diffusers_constructor_arguments():
    from diffusers.models.attention import BasicTransformerBlock as ReferenceBlock
    from diffusers.models.attention import FeedForward as ReferenceFeedForward

    torch.manual_seed(0)
    reference = ReferenceBlock(16, 2, 8, 0.0, 12, "geglu", None, False, False, False, True).eval()
    ours = BasicTransformerBlock(16, 2, 8, 0.0, 12, "geglu", None, False, False, False, True).eval()
    ours.load_state_dict(reference.state_dict())
    assert ours.attn1.upcast_attention and not ours.use_ada_layer_norm and not ours.use_ada_layer_norm_zero
    tokens, context = torch.randn(2, 5, 16), torch.randn(2, 3, 12)
    torch.testing.assert_close(
        ours(tokens, encoder_hidden_states=context), reference(tokens, encoder_hidden_states=context)
    )
    feed = FeedForward(16, dim_out=8, mult=2)
    feed.load_state_dict(ReferenceFeedForward(16, dim_out=8, mult=2).state_dict())
    with pytest.raises(errors.ModelConfigError, match="activation_fn"):
        FeedForward(16, activation_fn="gelu")


@torch.no_grad()
def test_blocks_with_a_replaced_forward_get_diffusers_arguments(unets):
    """reference-only pipelines replace ``forward`` of transformer blocks and UNet blocks."""
    reference, ours = unets
    seen: dict[str, list] = {"reference": [], "ours": []}
    for key, model in (("reference", reference), ("ours", ours)):
        blocks = [model.mid_block, model.down_blocks[0], model.up_blocks[1]]
        blocks += [m for m in model.modules() if type(m).__name__ == "BasicTransformerBlock"]
        for block in blocks:
            original = block.forward

            def patched(*args, _original=original, _block=block, _seen=seen[key], **kwargs):
                # what a replacement written against diffusers' signature receives, by name
                bound = inspect.signature(_original).bind(*args, **kwargs).arguments
                described = {
                    name: _describe(value) for name, value in bound.items() if value is not None and name != "kwargs"
                }
                _seen.append((type(_block).__name__, described))
                return _original(*args, **kwargs)

            block.forward = patched
    inputs = _sd_inputs(masked=True)
    torch.testing.assert_close(ours(**inputs).sample, reference(**inputs).sample, rtol=1e-4, atol=1e-5)
    assert seen["ours"] == seen["reference"]


def _describe(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape))
    if isinstance(value, tuple):
        return tuple(_describe(item) for item in value)
    return value

"""CUDA-graph replay of a model's forward pass, one graph per input signature.

A diffusion pipeline calls its UNet with the same shapes at every step, and on a fast GPU the
UNet's eager forward is launch-bound: the GPU waits while Python enqueues hundreds of kernels.
:class:`GraphedModule` captures the forward once per *signature* and replays it afterwards::

    signature = (for every argument, in order: its name, and for a tensor its shape and dtype,
                 for anything else its value) + the model's weight placement

    call(args)  --signature-->  LRU cache (at most max_graphs entries)
                                  hit:  copy args into the graph's static inputs, replay,
                                        return clones of its static outputs
                                  miss: clone args into new static inputs, warm up on a side
                                        stream, capture, evict the least recently used graph

Rules
    - Python numbers (the timestep) become 0-d tensors, so one graph serves every step.
    - Every tensor input is copied to the model's device (a CPU timestep is fine).
    - Outputs are clones: the caller may keep them across steps (a scheduler does).
    - Anything that cannot be replayed runs eagerly, with ONE :class:`PipeyardWarning` per
      wrapper saying why: no CUDA, inputs not on CUDA, autograd on, training mode, a capture
      error (after which the wrapper stays eager).
    - A graph replays the weights' memory: in-place weight edits are seen, but the fused
      projection cache (:mod:`pipeyard.models.fused`) and ``.to()`` are not. Moving the model
      changes the signature (new capture); after in-place edits call :meth:`GraphedModule.clear`.

Pipelines use it through ``pipe.enable_cuda_graph()`` (:mod:`pipeyard.pipelines.base`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

from .errors import PipeyardWarning

Replay = Callable[[], Any]
#: capture(call, static_args, static_kwargs) -> a function that reruns the call on those inputs
Capture = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Replay]


def capture_cuda_graph(
    call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], warmup: int = 2
) -> Replay:
    """Record ``call(*args, **kwargs)`` into a ``torch.cuda.CUDAGraph``; return its replay.

    Warm-up calls run on a side stream first (cuDNN/cuBLAS autotuning, lazy inits, and
    ``torch.compile``'s first compilations must not happen inside the capture).
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            call(*args, **kwargs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = call(*args, **kwargs)

    def replay() -> Any:
        graph.replay()
        return static_output

    replay.graph = graph  # type: ignore[attr-defined]  # keeps the graph (and its pool) alive
    return replay


@dataclasses.dataclass
class _Entry:
    """One captured signature: its static inputs and the replay of the call on them."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    replay: Replay


class GraphedModule:
    """``module(*args, **kwargs)``, replayed from CUDA graphs; every other attribute is the module's.

    Args:
        module: the model (e.g. a UNet); stays reachable as :attr:`module`.
        max_graphs: how many signatures keep a graph (least recently used evicted first).
        compile: capture ``torch.compile(module)`` instead of the module (compiled on the first
            capture, during warm-up). Eager fallbacks always run the plain module.
        capture: how to record a call; the default records a CUDA graph. Tests pass another.
        require_cuda: refuse (and run eagerly) when inputs are not CUDA tensors.

    Example::

        unet = GraphedModule(unet, max_graphs=4)
        noise = unet(latents, t, encoder_hidden_states=embeddings).sample  # captures, then replays
    """

    _pipeyard_graphed_ = True  # how pipelines/base.py recognises a wrapper without importing torch

    def __init__(
        self,
        module: nn.Module,
        max_graphs: int = 4,
        *,
        compile: bool = False,
        capture: Capture = capture_cuda_graph,
        require_cuda: bool = True,
    ) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.__dict__.update(module=module, max_graphs=max_graphs, _capture=capture, _require_cuda=require_cuda)
        self.__dict__.update(_graphs=OrderedDict(), hits=0, misses=0, evictions=0, _broken=None, _warned=False)
        self.__dict__.update(_compile=compile, _compiled=None)

    # ------------------------------------------------------------------ proxying

    def __getattr__(self, name: str) -> Any:
        if "module" not in self.__dict__:  # during copy/unpickling, before __init__ ran
            raise AttributeError(name)
        return getattr(self.__dict__["module"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.module, name, value)

    def __repr__(self) -> str:
        return f"GraphedModule({type(self.module).__name__}, graphs={len(self._graphs)}/{self.max_graphs})"

    @property
    def graph_count(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Free every graph (and its memory pool); later calls capture again."""
        self._graphs.clear()

    # ------------------------------------------------------------------ calling

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        reason = self._eager_reason(args, kwargs)
        if reason is not None:
            self._warn_once(reason)
            return self.module(*args, **kwargs)
        args, kwargs = self._tensorize(args, kwargs)
        key = self._signature(args, kwargs)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._capture_entry(key, args, kwargs)
            if entry is None:
                return self.module(*args, **kwargs)
        else:
            self.__dict__["hits"] += 1
            self._graphs.move_to_end(key)
            with torch.inference_mode():  # static inputs cloned under inference_mode accept it
                _copy_into(entry.args, entry.kwargs, args, kwargs)
        return _clone_output(entry.replay())

    def _eager_reason(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        """Why this call cannot be replayed from a graph, or ``None`` when it can."""
        if self._broken is not None:
            return self._broken
        if self.module.training:
            return "the model is in training mode (call .eval())"
        if torch.is_grad_enabled():
            return "autograd is on (run under torch.no_grad() or torch.inference_mode())"
        if self._require_cuda:
            if not torch.cuda.is_available():
                return "CUDA is not available"
            device = _first_tensor(args, kwargs)
            if device is None or device.device.type != "cuda":
                return "the inputs are not CUDA tensors"
        try:
            hash(tuple(_static_part(v) for v in (*args, *kwargs.values())))
        except TypeError:
            return "an argument is neither a tensor nor hashable"
        return None

    def _warn_once(self, reason: str) -> None:
        if not self._warned:
            self.__dict__["_warned"] = True
            warnings.warn(f"CUDA graphs off, running {type(self.module).__name__} eagerly: {reason}", PipeyardWarning, stacklevel=3)

    def _capture_entry(self, key: Hashable, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Entry | None:
        self.__dict__["misses"] += 1
        if len(self._graphs) >= self.max_graphs:  # evict first: never max_graphs + 1 pools alive
            self._graphs.popitem(last=False)
            self.__dict__["evictions"] += 1
        static_args = tuple(_static_copy(v) for v in args)
        static_kwargs = {name: _static_copy(v) for name, v in kwargs.items()}
        try:
            replay = self._capture(self._graph_callable(), static_args, static_kwargs)
        except Exception as error:  # noqa: BLE001 - any capture failure means: run eagerly
            self.__dict__["_broken"] = f"capture failed ({type(error).__name__}: {error})"
            self._warn_once(self._broken)
            return None
        entry = _Entry(static_args, static_kwargs, replay)
        self._graphs[key] = entry
        return entry

    def _graph_callable(self) -> Callable[..., Any]:
        """What gets captured: the module, or its ``torch.compile`` wrapper (built once)."""
        if not self._compile:
            return self.module
        if self._compiled is None:
            self.__dict__["_compiled"] = torch.compile(self.module)
        return self._compiled

    def _tensorize(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Python numbers -> 0-d tensors; every tensor onto the model's device."""
        first = _first_tensor(args, kwargs)
        device = first.device if first is not None else torch.device("cpu")
        return tuple(_as_input(v, device) for v in args), {k: _as_input(v, device) for k, v in kwargs.items()}

    def _signature(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        weights = next(self.module.parameters(), None)
        placement = None if weights is None else (weights.data_ptr(), weights.dtype, weights.device)
        positional = tuple(_static_part(v) for v in args)
        named = tuple((name, _static_part(v)) for name, v in kwargs.items())
        return positional, named, placement


# ---------------------------------------------------------------------- argument helpers


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor | None:
    """The first tensor of a non-scalar shape (the sample), else the first tensor at all."""
    tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
    return next((t for t in tensors if t.ndim > 0), tensors[0] if tensors else None)


def _as_input(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(value, dtype=torch.int64 if isinstance(value, int) else torch.float64, device=device)
    return value


def _static_part(value: Any) -> Hashable:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype, value.device)
    return value


def _static_copy(value: Any) -> Any:
    return value.clone() if isinstance(value, torch.Tensor) else value


def _copy_into(
    static_args: tuple[Any, ...], static_kwargs: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    for static, value in zip((*static_args, *static_kwargs.values()), (*args, *kwargs.values())):
        if isinstance(static, torch.Tensor):
            static.copy_(value)


def _clone_output(output: Any) -> Any:
    """Clones of the static output tensors, in the same container (tuple, list or dataclass)."""
    if isinstance(output, torch.Tensor):
        return output.clone()
    if isinstance(output, (tuple, list)):
        return type(output)(_clone_output(v) for v in output)
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        return dataclasses.replace(output, **{f.name: _clone_output(getattr(output, f.name)) for f in dataclasses.fields(output)})
    return output

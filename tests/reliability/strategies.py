"""Hypothesis strategies for data from a stranger, and the suite's hypothesis profiles.

Each strategy draws inputs a hostile or broken repository, registry or user could hand pipeyard:
mostly near-valid values (the shape a parser expects, one part wrong), some plain junk. The
tests in ``test_hostile_input.py`` feed them to the public entry points and hold that only
:class:`pipeyard.errors.PipeyardError` subclasses escape.

Profiles: ``reliability-fast`` (``make test``: few examples, derandomized, no example database,
so a CI run is the same every time) and ``reliability-long`` (``make reliability``: many more
examples, still derandomized). :data:`HYPOTHESIS` is the one the ``profile`` fixture's
environment variable picks; decorate each ``@given`` test with it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from .conftest import _profile_name

_COMMON = dict(
    derandomize=True,
    database=None,
    deadline=None,
    # Fixtures (PIPEYARD_HOME, servers) are shared by a test's examples on purpose; each example
    # makes its own folders under them.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("reliability-fast", max_examples=20, **_COMMON)
settings.register_profile("reliability-long", max_examples=400, **_COMMON)

#: The settings of the running profile: ``@HYPOTHESIS`` above ``@given``.
HYPOTHESIS = settings.get_profile(f"reliability-{_profile_name()}")


def examples(fast: int, long: int) -> settings:
    """The running profile with another example count (for the slow entry points)."""
    return settings(HYPOTHESIS, max_examples=long if _profile_name() == "long" else fast)


# --------------------------------------------------------------------------- names

_NAME_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs",))
_PATHY = st.sampled_from([
    "..", "../x", "../../etc/passwd", "/etc/passwd", "/tmp", "~", "~/x.py", "./x.py", "x/../y", "a\\b",
    "a\x00b", "C:\\x", "x.py", "pipeline.py", "a/b/c", "a//b", "a/", "/", ".", "", " ", "\n", "a b",
    "one_step_unet", "alice/pipe", "alice/../pipe", "-x", "--help", "%2e%2e/x", "\u202egnp.py",
])


def pipeline_names() -> st.SearchStrategy[str]:
    """Values a caller could pass as ``custom_pipeline``: names, repo ids, path-like junk."""
    simple = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True)
    return st.one_of(
        _PATHY, simple, repo_ids(), st.text(_NAME_CHARS, max_size=60),
        st.builds(lambda a, b: f"{a}/{b}", _PATHY, simple),
    )


def revisions() -> st.SearchStrategy[str | None]:
    """``custom_revision`` / ``revision`` values: None, branches, shas, and path-like junk."""
    return st.one_of(
        st.none(), st.sampled_from(["main", "v1.0", "refs/pr/1", "a" * 40, "0" * 40, "..", "../main", "/main"]),
        _PATHY, st.from_regex(r"[0-9a-f]{7,40}", fullmatch=True), st.text(_NAME_CHARS, max_size=50),
    )


def repo_ids() -> st.SearchStrategy[str]:
    """Hub repo ids: valid ``owner/name`` ones and ones the Hub's naming rules refuse."""
    part = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
    junk = st.text(st.sampled_from("ab/.-_ \\\x00~:%"), min_size=1, max_size=30)
    return st.one_of(st.builds(lambda a, b: f"{a}/{b}", part, part), part, junk, _PATHY)


# --------------------------------------------------------------------------- JSON documents

#: Integers of every size but those that would make a model or schedule of 1-1000 GB real
#: (2**21 to 2**40 elements: a schedule is allocated, not checked; see docs/security.md).
_INTEGERS = st.one_of(st.integers(-(2**20), 2**20), st.integers(2**40, 2**70), st.integers(-(2**70), -(2**40)))
_SCALARS = st.one_of(
    st.none(), st.booleans(), _INTEGERS,
    st.floats(allow_nan=False, allow_infinity=False), st.text(_NAME_CHARS, max_size=20), _PATHY,
)
json_values = st.recursive(
    _SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)

_COMPONENT_CLASSES = st.sampled_from([
    "UNet2DModel", "UNet2DConditionModel", "AutoencoderKL", "DDPMScheduler", "DDIMScheduler", "PNDMScheduler",
    "CLIPTextModel", "CLIPTokenizer", "StableDiffusionSafetyChecker", "Nope", "os", "__import__", "",
])
_LIBRARIES = st.sampled_from(["diffusers", "pipeyard", "transformers", "os", "builtins", "../x", "", "torch"])
_PIPELINE_CLASSES = st.sampled_from([
    "DDPMPipeline", "DDIMPipeline", "StableDiffusionPipeline", "DiffusionPipeline", "Nope", "os.system", "",
])


def component_entries() -> st.SearchStrategy[Any]:
    """A model_index.json component value: ``[library, Class]`` pairs, nulls and junk."""
    return st.one_of(st.tuples(_LIBRARIES, _COMPONENT_CLASSES).map(list), st.just([None, None]), json_values)


def _mutated(base: dict[str, Any], keys: st.SearchStrategy[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with up to three keys set to drawn values and up to two keys removed."""
    return st.builds(
        lambda changes, dropped: {k: v for k, v in {**base, **changes}.items() if k not in dropped},
        st.dictionaries(keys, values, max_size=3), st.sets(st.sampled_from(sorted(base) or [""]), max_size=2),
    )


def model_index_documents(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """model_index.json objects: ``base`` (a loadable one) with a few entries changed.

    ``_class_name`` becomes a name, a ``[module, Class]`` pair that may leave the repository,
    or junk; components get hostile ``[library, Class]`` pairs or names that are paths; a
    ``_pipeyard_source`` record names an entry point or a path.
    """
    class_name = st.one_of(
        _PIPELINE_CLASSES, st.tuples(_PATHY, st.sampled_from(["X", "MyPipeline", "os", "a.b"])).map(list), json_values,
    )
    record = st.fixed_dictionaries({"kind": st.sampled_from(["ENTRY_POINT", "LOCAL_FILE", "HUB", 3]),
                                    "location": st.one_of(_PATHY, json_values)})
    keys = st.one_of(st.sampled_from(["_class_name", "_pipeyard_source", "trust_remote_code", *sorted(base)]), _PATHY)

    def value_for(key: str) -> st.SearchStrategy[Any]:
        if key == "_class_name":
            return class_name
        if key == "_pipeyard_source":
            return st.one_of(record, json_values)
        return component_entries()

    changes = keys.flatmap(lambda key: st.tuples(st.just(key), value_for(key)))
    return st.builds(
        lambda pairs, dropped: {k: v for k, v in {**base, **dict(pairs)}.items() if k not in dropped},
        st.lists(changes, max_size=3), st.sets(st.sampled_from(sorted(base)), max_size=1),
    )


def config_documents(base: dict[str, Any] | None = None) -> st.SearchStrategy[dict[str, Any]]:
    """config.json / scheduler_config.json objects: ``base`` with known keys set to any JSON value."""
    keys = st.sampled_from(sorted({
        "_class_name", "sample_size", "in_channels", "out_channels", "block_out_channels", "layers_per_block",
        "down_block_types", "up_block_types", "norm_num_groups", "num_train_timesteps", "beta_start", "beta_end",
        "beta_schedule", "trained_betas", "prediction_type", "timestep_spacing", "clip_sample", "steps_offset",
        "attention_head_dim", "cross_attention_dim", "_name_or_path", "__class__", "", "auto_map",
        "_attn_implementation_internal", "trust_remote_code", *(base or {}),
    }))
    return _mutated(base or {}, keys, json_values)


def json_file_bytes(documents: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """A JSON file as bytes: a document, or broken JSON (deep, duplicated keys, truncated, not UTF-8)."""
    broken = st.sampled_from([
        b"", b"{", b"[]", b"null", b"1", b'"x"', b"\xff\xfe{}", b'{"a": 1, "a": 2}', b"[" * 100_000,
        b'{"a": NaN}', b'{"a": 1e999999}', b"{\"a\": \"\\ud800\"}", b"\x00" * 64, b'{"a": ' + b"9" * 5000 + b"}",
    ])
    valid = documents.map(lambda d: json.dumps(d).encode())
    return st.one_of(valid, valid, valid, valid, broken, documents.map(lambda d: json.dumps(d).encode()[:-1]))


# --------------------------------------------------------------------------- safetensors

_DTYPES = st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F4", "F6_E2M3", "f32", "F128", "", "OBJECT"])


_DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1}
_LIES = ("none", "none", "offset", "overlap", "gap", "dtype", "shape", "truncate", "extend", "length", "metadata",
         "negative", "huge-shape", "order")


@st.composite
def _consistent_tensors(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A header and data that agree: tensors laid end to end, each span its exact size."""
    header: dict[str, Any] = {}
    position = 0
    for index in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(sorted(_DTYPE_SIZES)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        size = _DTYPE_SIZES[dtype]
        for dim in shape:
            size *= dim
        header[f"t{index}"] = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + size]}
        position += size
    return header, draw(st.binary(min_size=position, max_size=position))


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    """A safetensors file: a consistent one with one lie told (an offset moved, two ranges
    overlapping, a gap, a dtype or shape that does not fit its span, data cut or extended, a
    header length off or huge, junk metadata), or junk from the start."""
    if draw(st.integers(0, 9)) == 0:  # junk: any header, any declared length
        raw = draw(json_file_bytes(json_values))
        length = draw(st.one_of(st.just(len(raw)), st.integers(0, 2**64 - 1)))
        return struct.pack("<Q", length) + raw + draw(st.binary(max_size=32))
    header, data = draw(_consistent_tensors())
    names = sorted(header)
    victim = header[draw(st.sampled_from(names))]
    lie = draw(st.sampled_from(_LIES))
    begin, end = victim["data_offsets"]
    if lie == "offset":
        shift = draw(st.integers(-16, 16).filter(bool))
        victim["data_offsets"] = [begin + shift, end + shift]
    elif lie == "overlap" and len(names) > 1:
        header[names[1]]["data_offsets"] = list(header[names[0]]["data_offsets"])
    elif lie == "gap":
        victim["data_offsets"] = [begin + 1, end + 1]
        data += b"\0"
    elif lie == "dtype":
        victim["dtype"] = draw(_DTYPES)
    elif lie == "shape":
        victim["shape"] = draw(st.one_of(st.lists(st.integers(0, 9), max_size=4), json_values))
    elif lie == "truncate":
        data = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    elif lie == "extend":
        data += draw(st.binary(min_size=1, max_size=16))
    elif lie == "negative":
        victim["data_offsets"] = [-1, end]
    elif lie == "huge-shape":
        victim["shape"] = [2**62, 2**62]
    elif lie == "order":
        victim["data_offsets"] = [end, begin]
    elif lie == "metadata":
        header["__metadata__"] = draw(json_values)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads its header to 8 bytes
    length = len(raw)
    if lie == "length":
        length = draw(st.one_of(st.integers(0, len(raw) + 64), st.just(2**64 - 1), st.just(2**31)))
    return struct.pack("<Q", length) + raw + data


# --------------------------------------------------------------------------- Python files

#: Written at the top of a generated pipeline file: if any line of it runs, the marker appears.
MARKER_LINE = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"


def pep723_blocks() -> st.SearchStrategy[str]:
    """``# /// script`` blocks: valid, invalid TOML, wrong types, doubled, unclosed."""
    toml_bodies = st.sampled_from([
        'dependencies = ["torch"]', 'dependencies = "torch"', "dependencies = [1, 2]", 'requires-python = ">=3.10"',
        "requires-python = 3", '[tool.pipeyard]\nrequires-core = ">=0.1"', "[tool.pipeyard]\ntags = 5",
        "[tool]\npipeyard = 1", "tool = 1", "= =", '[tool.pipeyard]\nsummary = "x"\nsummary = "y"',
        'dependencies = ["os; python_version > \\"1\\""]', 'dependencies = ["-e /etc"]', "dependencies = [\"" + "a" * 500 + "\"]",
        'dependencies = ["pipeyard @ file:///etc/passwd"]', "", "\x00",
    ])

    def block(bodies: list[str], close: bool) -> str:
        lines = "".join("#\n" if not line else f"# {line}\n" for body in bodies for line in body.split("\n"))
        return "# /// script\n" + lines + ("# ///\n" if close else "")

    return st.one_of(
        st.builds(block, st.lists(toml_bodies, min_size=1, max_size=3), st.booleans()),
        st.builds(lambda a, b: a + b, st.builds(block, st.lists(toml_bodies, max_size=2), st.just(True)),
                  st.builds(block, st.lists(toml_bodies, max_size=2), st.just(True))),
        st.text(max_size=80).map(lambda t: "# /// script\n# " + t.replace("\n", "\n# ") + "\n# ///\n"),
    )


_CLASS_LINES = st.sampled_from([
    "class P(DiffusionPipeline):\n    pass\n",
    "class P(DiffusionPipeline):\n    def __call__(self):\n        return 1\n",
    "class P(DiffusionPipeline):\n    pass\nclass Q(DiffusionPipeline):\n    pass\n",
    "class P(object):\n    pass\n",
    "class P(DiffusionPipeline):\n    {marker_line}",
    "P = type('P', (DiffusionPipeline,), {{}})\n",
    "",
])
_IMPORT_LINES = st.sampled_from([
    "from pipeyard import DiffusionPipeline\n", "from diffusers import DiffusionPipeline\n",
    "from diffusers import DiffusionPipeline, NotAThingPipeline\n", "from . import helper\n",
    "from .. import x\n", "from ....a.b import c\n", "import os\nimport not_a_module_xyz\n", "",
    "from pipeyard import DiffusionPipeline as D\nDiffusionPipeline = D\n",
])


@st.composite
def pipeline_sources(draw: st.DrawFn, marker: str) -> bytes:
    """A pipeline file's bytes. Every one whose code could run writes ``marker`` first.

    Valid files (one ``DiffusionPipeline`` subclass), and the ways a file fails: two classes or
    none, syntax errors, bytes that are not UTF-8, NUL bytes, relative imports above the root,
    imports of missing modules, a broken PEP 723 block; plus arbitrary text.
    """
    marker_line = MARKER_LINE.format(marker=marker)
    kind = draw(st.sampled_from(["built"] * 6 + ["text", "bytes"]))
    if kind == "text":
        return (marker_line + draw(st.text(max_size=200))).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return marker_line.encode() + draw(st.binary(max_size=200))
    parts = [
        draw(st.one_of(st.just(""), pep723_blocks())),
        marker_line,
        draw(_IMPORT_LINES),
        draw(_CLASS_LINES).format(marker_line=marker_line),
        draw(st.sampled_from([""] * 6 + ["def broken(:\n", "x = '\\N{nope}'\n", "\x00\n", "if True:\nreturn\n", "\t  x = 1\n"])),
    ]
    return "".join(parts).encode("utf-8", "surrogatepass")

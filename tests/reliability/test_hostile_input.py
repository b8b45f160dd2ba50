"""Hostile input at scale: hypothesis drives the public entry points with data from a stranger.

For every drawn input, each entry point either works or raises a
:class:`~pipeyard.errors.PipeyardError` subclass; nothing is written outside PIPEYARD_HOME and
the Hub cache (an audit hook sees every write of the process, :mod:`.watch`); and no line of a
file that was not trusted runs (each generated file writes a marker file as its first
statement). Sizes come from the hypothesis profile (:mod:`.strategies`): a few dozen examples
per entry point in ``make test``, hundreds in ``make reliability``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis.control import currently_in_test_context
from hypothesis import strategies as st

from pipeyard import errors

from . import strategies as s
from .watch import WriteWatch, allowed_roots

_COUNTER = itertools.count()


@pytest.fixture
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No way out: a working folder and HOME of the test's own, GitHub and the Hub on closed ports."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", "http://127.0.0.1:9/{revision}/community/{name}")
    monkeypatch.setenv("PIPEYARD_TIMEOUT", "2")
    return tmp_path


def _example_dir(root: Path) -> Path:
    """A fresh folder for one hypothesis example (fixtures are shared by a test's examples)."""
    return Path(tempfile.mkdtemp(prefix=f"ex{next(_COUNTER)}-", dir=root))


class Hostile:
    """Runs one drawn input through an entry point and counts it into the scenario's tally."""

    def __init__(self, tally, scenario: str) -> None:
        self.tally = tally(scenario)

    def run(self, call: Callable[[], object], *, marker: Path | None = None, extra_allowed: tuple[Path, ...] = ()) -> BaseException | None:
        """``call()``; returns the typed error it raised, or None. Anything else fails the test."""
        self.tally.cases += 1
        self.tally.faults += 1
        raised: BaseException | None = None
        with WriteWatch(allowed_roots(*extra_allowed)) as watch:
            try:
                call()
            except errors.PipeyardError as exc:
                raised = exc
            except Exception:
                self.tally.failures += 1
                raise
        self.tally.outside_writes += len(watch.outside)
        ran = marker is not None and marker.exists()
        self.tally.untrusted_runs += int(ran)
        assert watch.outside == [], f"written outside PIPEYARD_HOME and the Hub cache: {watch.outside}"
        assert not ran, f"untrusted code ran: {marker} was written"
        if currently_in_test_context():  # counted by --hypothesis-show-statistics
            event(f"outcome: {type(raised).__name__ if raised else 'accepted'}")
        return raised


@pytest.fixture
def hostile(tally) -> Callable[[str], Hostile]:
    """``hostile("scenario")``: the scenario's runner, one per test however many examples run."""
    made: dict[str, Hostile] = {}

    def runner(scenario: str) -> Hostile:
        if scenario not in made:
            made[scenario] = Hostile(tally, scenario)
        return made[scenario]

    return runner


# --------------------------------------------------------------------------- names and revisions


@s.HYPOTHESIS
@given(name=s.pipeline_names(), revision=s.revisions())
def test_any_pipeline_name_and_revision_resolve_or_fail_typed(hermetic, hostile, name, revision):
    from pipeyard.host import resolve

    hostile("hostile input: custom_pipeline names").run(lambda: resolve.resolve_source(name, custom_revision=revision))


@s.examples(fast=10, long=200)
@given(name=s.pipeline_names(), revision=s.revisions())
def test_any_pipeline_name_and_revision_load_or_fail_typed_offline(hermetic, hostile, monkeypatch, name, revision):
    from pipeyard.host import load_pipeline_class

    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")  # Hub and GitHub names stop at the offline check
    hostile("hostile input: custom_pipeline names").run(lambda: load_pipeline_class(name, custom_revision=revision))


@s.HYPOTHESIS
@given(repo_id=s.repo_ids(), revision=s.revisions(), subfolder=st.one_of(st.none(), s.pipeline_names()))
def test_any_repo_id_revision_and_subfolder_are_checked_before_a_request(hermetic, hostile, hub_requests, repo_id, revision, subfolder):
    from pipeyard import hub

    def call() -> None:
        hub.resolve_file(repo_id, "config.json", subfolder=subfolder, options=hub.HubOptions(revision=revision, local_files_only=True))

    hostile("hostile input: repo ids, revisions, subfolders").run(call)
    assert hub_requests == []


# --------------------------------------------------------------------------- pipeline files


def _pipeline_file(root: Path, data: bytes) -> tuple[Path, Path]:
    folder = _example_dir(root)
    marker = folder / "MARKER"
    (folder / "pipeline.py").write_bytes(data.replace(b"__MARKER__", os.fsencode(marker)))
    return folder / "pipeline.py", marker


@s.HYPOTHESIS
@given(data=s.pipeline_sources("__MARKER__"))
def test_any_pipeline_file_verifies_or_fails_typed_and_nothing_runs(hermetic, hostile, data):
    from pipeyard.host import verify

    path, marker = _pipeline_file(hermetic, data)
    hostile("hostile input: pipeline files (verify)").run(
        lambda: verify.verify_package({"pipeline.py": path.read_bytes()}, "pipeline.py", str(path.parent)), marker=marker
    )


@s.examples(fast=10, long=200)
@given(data=s.pipeline_sources("__MARKER__"))
def test_cli_verify_of_any_file_prints_a_typed_error_and_runs_nothing(hermetic, hostile, invoke, data):
    path, marker = _pipeline_file(hermetic, data)
    results = []
    hostile("hostile input: pipeline files (pipeyard verify)").run(lambda: results.append(invoke("verify", path)), marker=marker)
    result = results[0]
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 1:  # a finding (`path:line: error: ...`) or `ErrorType: message`
        assert "error" in result.output.lower() and "Traceback" not in result.output, result.output


@s.examples(fast=10, long=200)
@given(data=s.pipeline_sources("__MARKER__"), module=st.sampled_from(["pipe", "pipeline", "one_step_unet"]))
def test_a_model_folder_naming_any_module_never_runs_it_untrusted(hermetic, hostile, data, module):
    """A repository's module is code the caller did not name: refused (or not valid), never run."""
    from pipeyard import DiffusionPipeline

    folder = _example_dir(hermetic)
    marker = folder / "MARKER"
    (folder / f"{module}.py").write_bytes(data.replace(b"__MARKER__", os.fsencode(marker)))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": [module, "P"]}))
    raised = hostile("hostile input: modules named by a model folder").run(
        lambda: DiffusionPipeline.from_pretrained(folder), marker=marker
    )
    assert raised is not None


@s.examples(fast=10, long=200)
@given(data=s.pipeline_sources("__MARKER__"))
def test_a_pipeline_file_the_caller_names_loads_or_fails_typed(hermetic, hostile, data):
    """An explicit local path is trusted: its code may run (after verification), errors stay typed."""
    from pipeyard.host import load_pipeline_class

    path, marker = _pipeline_file(hermetic, data)
    hostile("hostile input: pipeline files (load by path)").run(lambda: load_pipeline_class(path), extra_allowed=(path.parent,))


class FileHub:
    """A Hub fake serving one repo per example: ``publish(files)`` returns its new repo id."""

    def __init__(self, httpserver) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        httpserver.expect_request(re.compile(r"/api/models/alice/[^/]+/revision/.*")).respond_with_handler(self.info)
        httpserver.expect_request(re.compile(r"/alice/[^/]+/resolve/.*")).respond_with_handler(self.file)

    def publish(self, files: dict[str, bytes]) -> str:
        repo_id = f"alice/hostile-{len(self.repos)}"
        self.repos[repo_id] = files
        return repo_id

    @staticmethod
    def _commit(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def info(self, request):
        from werkzeug import Response

        repo_id = "/".join(request.path.split("/")[3:5])
        siblings = [{"rfilename": name} for name in sorted(self.repos.get(repo_id, {}))]
        body = {"id": repo_id, "sha": self._commit(repo_id), "siblings": siblings}
        return Response(json.dumps(body), content_type="application/json")

    def file(self, request):
        from werkzeug import Response

        parts = request.path.lstrip("/").split("/", 4)  # alice, name, resolve, commit, path
        data = self.repos.get(f"{parts[0]}/{parts[1]}", {}).get(parts[4])
        if data is None:
            return Response("not found", status=404, headers={"X-Error-Code": "EntryNotFound"})
        headers = {"X-Repo-Commit": parts[3], "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}
        return Response(data, headers=headers)


@pytest.fixture
def file_hub(hermetic, httpserver, monkeypatch) -> FileHub:
    monkeypatch.setenv("HF_ENDPOINT", httpserver.url_for("").rstrip("/"))
    return FileHub(httpserver)


@s.examples(fast=10, long=200)
@given(data=s.pipeline_sources("__MARKER__"), helper=s.pipeline_sources("__MARKER__"))
def test_a_hub_pipeline_of_any_content_is_refused_or_typed_and_never_runs(hermetic, hostile, file_hub, data, helper):
    """A Hub repo as custom_pipeline (and a sibling module it may import), fetched over HTTP:
    verification or the gate stops it; not one line runs, nothing lands outside the roots."""
    from pipeyard.host import load_pipeline_class

    marker = _example_dir(hermetic) / "MARKER"
    mark = os.fsencode(marker)
    repo_id = file_hub.publish({"pipeline.py": data.replace(b"__MARKER__", mark), "helper.py": helper.replace(b"__MARKER__", mark)})
    raised = hostile("hostile input: Hub pipelines").run(lambda: load_pipeline_class(repo_id), marker=marker)
    assert raised is not None


@s.HYPOTHESIS
@given(block=s.pep723_blocks())
def test_any_pep723_block_parses_or_fails_typed(hermetic, hostile, block):
    from pipeyard.host.script_metadata import script_metadata

    hostile("hostile input: PEP 723 blocks").run(lambda: script_metadata(block + "\nx = 1\n", "pipeline.py"))


# --------------------------------------------------------------------------- configs and model_index


@pytest.fixture
def ddpm_parts(tiny_ddpm_folder: Path) -> Path:
    """The tiny DDPM folder (diffusers-saved), whose parts are copied beside a hostile document."""
    return tiny_ddpm_folder


def _model_folder(root: Path, parts: Path, model_index: bytes) -> Path:
    folder = _example_dir(root)
    for sub in ("unet", "scheduler"):
        shutil.copytree(parts / sub, folder / sub)
    (folder / "model_index.json").write_bytes(model_index)
    return folder


@s.examples(fast=12, long=300)
@given(data=st.data())
def test_any_model_index_loads_or_fails_typed(hermetic, hostile, ddpm_parts, data):
    from pipeyard import DiffusionPipeline

    base = json.loads((ddpm_parts / "model_index.json").read_text())
    document = data.draw(s.json_file_bytes(s.model_index_documents(base)), label="model_index.json")
    folder = _model_folder(hermetic, ddpm_parts, document)
    hostile("hostile input: model_index.json").run(lambda: DiffusionPipeline.from_pretrained(folder))


@s.HYPOTHESIS
@given(document=s.json_file_bytes(s.config_documents()),
       scheduler=st.sampled_from(["DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler"]))
def test_any_scheduler_config_loads_or_fails_typed(hermetic, hostile, document, scheduler):
    import pipeyard

    folder = _example_dir(hermetic)
    (folder / "scheduler_config.json").write_bytes(document)
    cls = getattr(pipeyard, scheduler)

    def call() -> None:
        sched = cls.from_pretrained(folder)
        sched.set_timesteps(4)

    hostile("hostile input: scheduler configs").run(call)


@s.examples(fast=12, long=300)
@given(data=st.data())
def test_any_unet_config_loads_or_fails_typed(hermetic, hostile, ddpm_parts, hub_requests, data):
    """Also: no key of a config names code or a repository to fetch (transformers CVE-2026-4372's
    ``_attn_implementation_internal``, ``auto_map``): no Hub request is made."""
    from pipeyard import UNet2DModel

    base = json.loads((ddpm_parts / "unet" / "config.json").read_text())
    document = data.draw(s.json_file_bytes(s.config_documents(base)), label="config.json")
    folder = _example_dir(hermetic)
    shutil.copy(ddpm_parts / "unet" / "diffusion_pytorch_model.safetensors", folder)
    (folder / "config.json").write_bytes(document)
    hostile("hostile input: model configs").run(lambda: UNet2DModel.from_pretrained(folder))
    assert hub_requests == []


# --------------------------------------------------------------------------- weights


@s.HYPOTHESIS
@given(data=s.safetensors_files())
def test_any_safetensors_header_is_read_or_refused_typed(hermetic, hostile, data):
    import torch

    from pipeyard import checkpoints

    path = _example_dir(hermetic) / "w.safetensors"
    path.write_bytes(data)

    def call() -> None:
        checkpoints.read_checkpoint_shapes(path, "safetensors")
        for _ in checkpoints.load_checkpoint_file(path, "safetensors", torch.device("cpu"), None, {}):
            pass

    raised = hostile("hostile input: safetensors headers").run(call)
    assert raised is None or isinstance(raised, errors.CorruptWeightsError), repr(raised)


@s.examples(fast=12, long=300)
@given(data=s.safetensors_files())
def test_a_model_with_any_weights_file_loads_or_fails_typed(hermetic, hostile, ddpm_parts, data):
    from pipeyard import UNet2DModel

    folder = _example_dir(hermetic)
    shutil.copy(ddpm_parts / "unet" / "config.json", folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(data)
    hostile("hostile input: model weights").run(lambda: UNet2DModel.from_pretrained(folder))


@pytest.mark.parametrize("lie", ["overlap", "gap", "uncovered tail", "past the end"])
def test_safetensors_ranges_that_overlap_or_leave_holes_are_refused(hermetic, hostile, lie):
    """Two tensors on the same bytes, or bytes no tensor owns (a polyglot's hiding place)."""
    import torch

    from pipeyard import checkpoints

    spans = {"overlap": ([0, 8], [0, 8], 8), "gap": ([0, 8], [12, 20], 20), "uncovered tail": ([0, 8], [8, 16], 24),
             "past the end": ([0, 8], [8, 16], 12)}
    first, second, data_size = spans[lie]
    header = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": first},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": second}}).encode()
    path = _example_dir(hermetic) / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(data_size))

    def call() -> None:
        checkpoints.read_checkpoint_shapes(path, "safetensors")
        list(checkpoints.load_checkpoint_file(path, "safetensors", torch.device("cpu"), None, {}))

    raised = hostile("hostile input: safetensors headers").run(call)
    assert isinstance(raised, errors.CorruptWeightsError), raised
    assert str(path) in str(raised)


def test_a_lying_header_at_every_length_is_refused_typed(hermetic, hostile):
    """Every header length from 0 to past the file, and the largest: no length escapes."""
    from pipeyard import checkpoints

    header = json.dumps({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    run = hostile("hostile input: safetensors headers")
    for length in [*range(0, len(header) + 24), 2**63, 2**64 - 1]:
        path = _example_dir(hermetic) / "w.safetensors"
        path.write_bytes(struct.pack("<Q", length) + header + bytes(8))
        run.run(lambda: checkpoints.read_checkpoint_shapes(path, "safetensors"))


# --------------------------------------------------------------------------- registry and trust store


@pytest.fixture
def registry_dir(hermetic: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A registry folder of the test's own in place of the bundled one."""
    from pipeyard import registry
    from pipeyard.host import resolve

    folder = hermetic / "registry"
    folder.mkdir()
    monkeypatch.setattr(registry, "_registry_dir", lambda: folder)
    import pipeyard._bundled as bundled

    original = bundled.bundled_dir
    monkeypatch.setattr(bundled, "bundled_dir", lambda kind: folder if kind == "registry" else original(kind))
    resolve._index_cached.cache_clear()
    yield folder
    resolve._index_cached.cache_clear()


def _index_entries() -> st.SearchStrategy[dict]:
    good = {"name": "one_step_unet", "file": "one_step_unet.py", "class": "UnetSchedulerOneForwardPipeline",
            "sha256": "0" * 64, "summary": "", "tags": [], "components": [], "dependencies": [],
            "requires-python": ">=3.10", "requires-core": ">=0.1", "added-in": "0.1.0"}
    hostile_values = st.one_of(s._PATHY, s.json_values)
    return st.builds(lambda key, value, drop: {**{k: v for k, v in good.items() if k != drop}, key: value},
                     st.sampled_from(sorted(good)), hostile_values, st.sampled_from([None, *sorted(good)]))


def _index_documents() -> st.SearchStrategy[bytes]:
    return s.json_file_bytes(st.one_of(
        st.builds(lambda p, h: {"version": 2, "pipelines": p, "hub": h},
                  st.lists(_index_entries(), max_size=3), st.one_of(st.just([]), s.json_values)),
        s.json_values,
    ))


@s.examples(fast=12, long=300)
@given(document=_index_documents(), name=st.one_of(st.just("one_step_unet"), s.pipeline_names()))
def test_any_registry_index_is_read_or_refused_typed(registry_dir, hostile, invoke, document, name):
    from pipeyard.host import resolve

    (registry_dir / "index.json").write_bytes(document)
    run = hostile("hostile input: registry index")
    results = []
    for args in (("list",), ("info", name)):
        run.run(lambda: results.append(invoke(*args)))
    for result in results:
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
    run.run(lambda: resolve.resolve_source(name))


@s.HYPOTHESIS
@given(document=s.json_file_bytes(st.one_of(
    s.json_values,
    st.builds(lambda t: {"version": 1, "trusted": t}, st.dictionaries(st.one_of(st.just("a" * 64), st.text(max_size=70)), s.json_values, max_size=3)),
)))
def test_any_trust_store_is_read_or_refused_typed(hermetic, hostile, document):
    import pipeyard.trust

    path = Path(pipeyard.trust.path())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document)
    run = hostile("hostile input: trust stores")
    run.run(pipeyard.trust.list)
    run.run(lambda: pipeyard.trust.add("b" * 64, source="test"))

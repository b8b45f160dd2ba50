"""Shared fixtures. Every test is hermetic: its own PIPEYARD_HOME and Hub cache, and no
network beyond 127.0.0.1 (HF_ENDPOINT points at a closed local port unless a test's own
server sets it).

Sections below are owned by the area that uses them; keep each area's fixtures together.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: nothing in the suite may reach the real Hub.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("PIPEYARD_OFFLINE", None)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """A fresh PIPEYARD_HOME and Hub cache for every test."""
    home = tmp_path_factory.mktemp("pipeyard-home")
    monkeypatch.setenv("PIPEYARD_HOME", str(home / "pipeyard"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PIPEYARD_OFFLINE", raising=False)
    monkeypatch.delenv("PIPEYARD_DISABLE_REMOTE_CODE", raising=False)
    yield home
    import sys

    if "pipeyard.plugins" in sys.modules:  # forget plugins a test registered
        sys.modules["pipeyard.plugins"].reset()


# ---- core fixtures ----


@pytest.fixture
def toy_model_class():
    """A tiny ModelMixin subclass: two linear layers and a non-persistent buffer."""
    import torch

    from pipeyard import ModelMixin, register_to_config

    class ToyModel(ModelMixin):
        @register_to_config
        def __init__(self, width: int = 8, depth: int = 2, scale: float = 1.0):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(depth))
            self.register_buffer("offsets", torch.arange(width, dtype=torch.float32), persistent=False)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x * self.config.scale + self.offsets

    return ToyModel


# ---- host fixtures ----
# Real servers for the custom-pipeline host (tests/test_host_*.py): an olah Hub mirror serving
# git repos offline, a raw-file server over a git repo standing in for GitHub, and counting
# hooks proving which loads make no request.

import http.server  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


class GitRepo:
    """A tiny git repository a test fills commit by commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        _git(path, "init", "-q", "-b", "main")

    def commit(self, files: dict[str, str | bytes], *, tag: str | None = None, branch: str | None = None) -> str:
        """Write ``files`` (path -> text), commit them on ``main``; return the sha.

        ``tag`` tags the commit; ``branch`` points that branch at it too.
        """
        for name, content in files.items():
            target = self.path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        _git(self.path, "add", "-A")
        _git(self.path, "commit", "-q", "--allow-empty", "-m", "update")
        for ref in filter(None, (tag and ("tag", tag), branch and ("branch", "-f", branch))):
            _git(self.path, *ref)
        return _git(self.path, "rev-parse", "HEAD")

    def show(self, revision: str, name: str) -> bytes | None:
        env = {**os.environ, **_GIT_ENV}
        done = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=self.path, env=env, capture_output=True)
        return done.stdout if done.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class OlahHub:
    """An olah server (offline, git mirrors) on 127.0.0.1; ``new_repo`` adds a Hub repo."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mirrors = root / "mirrors"
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        config = self.root / "olah.toml"
        config.write_text(textwrap.dedent(f"""
            [basic]
            host = "127.0.0.1"
            port = {self.port}
            repos-path = "{self.root / 'repos'}"
            mirrors-path = ["{self.mirrors}"]
            mirror-netloc = "127.0.0.1:{self.port}"
            mirror-lfs-netloc = "127.0.0.1:{self.port}"
            [accessibility]
            offline = true
        """))
        olah = Path(sys.executable).with_name("olah-cli")
        with open(self.root / "olah.log", "wb") as log:  # the child keeps its own copy
            self.process = subprocess.Popen([str(olah), "-c", str(config)], cwd=self.root, stdout=log, stderr=log)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, (self.root / "olah.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"olah did not start: {(self.root / 'olah.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def new_repo(self, name: str | None = None) -> tuple[str, GitRepo]:
        """A fresh empty model repo; returns its id and the git repo to commit into."""
        repo_id = name or f"alice/pipe-{uuid.uuid4().hex[:8]}"
        return repo_id, GitRepo(self.mirrors / "models" / repo_id)

    def new_dataset(self, name: str | None = None) -> tuple[str, GitRepo]:
        """A fresh empty dataset repo (diffusers' community mirror is one); its id and git repo."""
        repo_id = name or f"mirror/community-{uuid.uuid4().hex[:8]}"
        return repo_id, GitRepo(self.mirrors / "datasets" / repo_id)


@pytest.fixture(scope="session")
def olah_server(tmp_path_factory: pytest.TempPathFactory):
    """One olah Hub mirror for the session (tests add their own uniquely named repos)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    server = OlahHub(tmp_path_factory.mktemp("olah"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def olah_hub(olah_server: OlahHub, monkeypatch: pytest.MonkeyPatch) -> OlahHub:
    """The olah server, with HF_ENDPOINT pointing at it for this test."""
    monkeypatch.setenv("HF_ENDPOINT", olah_server.endpoint)
    return olah_server


@pytest.fixture
def hub_requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every HTTP request huggingface_hub sends in this test, as ``METHOD url`` (a counting hook).

    Wraps the transport every huggingface_hub client uses, so pooled connections count too.
    """
    import httpx2

    sent: list[str] = []
    original = httpx2.HTTPTransport.handle_request

    def counting(self, request):
        sent.append(f"{request.method} {request.url}")
        return original(self, request)

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", counting)
    return sent


class RawGitServer:
    """Serves ``/<owner>/<repo>/<revision>/<path>`` from a git repo, like raw.githubusercontent.com.

    ``requests`` lists every path asked for (the counting hook); ``stall`` makes it accept
    requests and never answer (to test timeouts).
    """

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo
        self.requests: list[str] = []
        self.stall = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.requests.append(self.path)
                if server.stall.is_set():
                    time.sleep(5)
                    return
                parts = self.path.lstrip("/").split("/", 3)
                data = server.repo.show(parts[2], parts[3]) if len(parts) == 4 else None
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.template = f"{self.url}/pipeyard/pipeyard/{{revision}}/community/{{name}}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stall.clear()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def github_raw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A GitHub stand-in: a git repo with ``community/``, served in the raw-URL layout.

    PIPEYARD_COMMUNITY_URL points at it for this test.
    """
    server = RawGitServer(GitRepo(tmp_path / "github-repo"))
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", server.template)
    yield server
    server.close()


def pipeline_source(class_name: str = "MyPipeline", body: str = "", header: str = "") -> str:
    """The text of a minimal valid pipeline file (used by the host tests)."""
    return (
        f"{header}from pipeyard import DiffusionPipeline\n\n\n"
        f"class {class_name}(DiffusionPipeline):\n"
        f"    \"\"\"A test pipeline.\"\"\"\n\n"
        f"    def __call__(self):\n        return {class_name!r}\n{body}"
    )


@pytest.fixture
def write_pipeline(tmp_path: Path):
    """Write a pipeline file (default: a valid one) at ``tmp_path/relative``; return its path."""

    def write(relative: str = "pipeline.py", text: str | None = None, **kwargs: str) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text is not None else pipeline_source(**kwargs), encoding="utf-8")
        return path

    return write


@pytest.fixture
def install_pipeline_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``install(entry, module, text, class_name)``: a real installed distribution (a module and a
    dist-info folder) registering ``entry = module:class_name`` in ``pipeyard.pipelines``; the
    module is forgotten again after the test."""
    site = tmp_path / "site"

    def install(entry: str, module: str, text: str, class_name: str) -> None:
        info = site / f"{module}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[pipeyard.pipelines]\n{entry} = {module}:{class_name}\n")
        (site / f"{module}.py").write_text(text)
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)  # undone after the test: forgotten

    return install


@pytest.fixture
def pipeline_text():
    """``pipeline_text(class_name="X", body="", header="")``: a valid pipeline file's text."""
    return pipeline_source


# ---- pipeline fixtures ----
# Tiny random pipelines built and saved by diffusers (the oracle) once per session; the
# pipeline tests load the saved folders with pipeyard and compare images with diffusers'.

import json  # noqa: E402

#: words the tiny tokenizer knows as whole tokens (everything else falls back to bytes)
_TINY_WORDS = ("a", "photo", "of", "cat", "dog", "astronaut", "riding", "horse", "blurry", "low", "quality")


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins for bytes that byte-level BPE (GPT-2, CLIP) uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_tiny_clip_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """vocab.json + merges.txt of a tiny CLIP BPE: all bytes, a few whole words, their merges."""
    alphabet = _byte_alphabet()
    vocab = [*alphabet, *(c + "</w>" for c in alphabet)]
    merges: list[str] = []
    for word in _TINY_WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            if f"{parts[0]} {parts[1]}" not in merges:
                merges.append(f"{parts[0]} {parts[1]}")
            if merged not in vocab:
                vocab.append(merged)
            parts = [merged, *parts[2:]]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_sd_components(folder: Path, *, sd2: bool = False, seed: int = 0) -> dict:
    """Random tiny SD components (diffusers classes): UNet, VAE, CLIP text encoder, tokenizer,
    PNDM scheduler, and (SD 1 style only) a safety checker with its feature extractor.

    ``sd2=True`` gives the SD 2 layout: linear projections, per-block head dims, upcast
    attention, v-prediction, no safety checker.
    """
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(2, 4) if sd2 else 8,
        use_linear_projection=sd2, upcast_attention=sd2,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4, sample_size=16,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=3, vocab_size=1000, hidden_act="gelu" if sd2 else "quick_gelu",
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(text_config).eval()
    vocab, merges = write_tiny_clip_tokenizer_files(folder / "_tokenizer_src")
    tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges), model_max_length=77)
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        steps_offset=1, set_alpha_to_one=False, prediction_type="v_prediction" if sd2 else "epsilon",
    )
    parts = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)
    if sd2:
        return {**parts, "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    clip_config = CLIPConfig(
        text_config={**text_config.to_dict()},
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=4, projection_dim=32),
        projection_dim=32,
    )
    safety_checker = StableDiffusionSafetyChecker(clip_config).eval()
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return {**parts, "safety_checker": safety_checker, "feature_extractor": feature_extractor}


# ---- model fixtures ----
# diffusers as the test-time oracle for pipeyard.models (tests/test_models_*.py).


class ModelOracle:
    """Helpers to build a diffusers model, save it, and compare outputs with pipeyard's."""

    FP32_TOLERANCE = 1e-4
    HALF_TOLERANCE = 1e-2

    def __init__(self, root: Path) -> None:
        self.root = root
        self._count = 0

    def save(self, model, **save_kwargs) -> Path:
        """Save a (diffusers) model into a fresh folder and return it."""
        self._count += 1
        folder = self.root / f"model-{self._count}"
        model.save_pretrained(folder, **save_kwargs)
        return folder

    @staticmethod
    def relative_error(expected, got) -> float:
        """``max |expected - got| / max |expected|``, computed in float32."""
        expected, got = expected.float(), got.float()
        return float((expected - got).abs().max() / expected.abs().max().clamp_min(1e-12))

    @staticmethod
    def half_dtype():
        """float16 where this CPU runs it (conv, group norm, SDPA), else bfloat16."""
        import torch

        try:
            x = torch.randn(1, 4, 4, 4, dtype=torch.float16)
            torch.nn.functional.conv2d(x, torch.randn(4, 4, 3, 3, dtype=torch.float16), padding=1)
            torch.nn.functional.group_norm(x, 2)
            q = torch.randn(1, 2, 4, 8, dtype=torch.float16)
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return torch.float16
        except RuntimeError:
            return torch.bfloat16


@pytest.fixture
def oracle(tmp_path: Path) -> ModelOracle:
    pytest.importorskip("diffusers")
    return ModelOracle(tmp_path)


def build_tiny_unconditional_unet(seed: int = 0):
    """A random tiny diffusers UNet2DModel (16x16 RGB) for the DDPM / DDIM pipelines."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=3, out_channels=3,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )


def _quiet_diffusers() -> None:
    """diffusers and transformers log (not warn) about optional extras; keep test output short."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_ddpm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DDPMPipeline folder (tiny UNet2DModel + DDPMScheduler) saved by diffusers."""
    from diffusers import DDPMPipeline, DDPMScheduler

    _quiet_diffusers()
    folder = tmp_path_factory.mktemp("tiny-ddpm") / "pipe"
    DDPMPipeline(unet=build_tiny_unconditional_unet(), scheduler=DDPMScheduler()).save_pretrained(folder)
    return folder


def _save_tiny_sd(tmp_path_factory: pytest.TempPathFactory, name: str, sd2: bool) -> Path:
    from diffusers import StableDiffusionPipeline

    _quiet_diffusers()
    root = tmp_path_factory.mktemp(name)
    components = build_tiny_sd_components(root, sd2=sd2)
    StableDiffusionPipeline(**components).save_pretrained(root / "pipe")
    return root / "pipe"


@pytest.fixture(scope="session")
def tiny_sd_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD 1.x-style StableDiffusionPipeline folder (with safety checker) saved by diffusers."""
    return _save_tiny_sd(tmp_path_factory, "tiny-sd", sd2=False)


@pytest.fixture(scope="session")
def tiny_sd2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SD 2.x-style folder (linear projection, v-prediction, no safety checker) saved by diffusers."""
    return _save_tiny_sd(tmp_path_factory, "tiny-sd2", sd2=True)


def assert_images_equal(ours, theirs, atol: float = 1e-4) -> float:
    """Max abs difference of two image arrays; fails above ``atol`` (shapes must match)."""
    import numpy as np

    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diff = float(np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max())
    print(f"\nmax-abs-diff {diff:.3g} {os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}")
    assert diff <= atol, f"max abs difference {diff} > {atol}"
    return diff


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` tests are opt-in: they run only when ``-m`` names the marker (``-m slow``)."""
    if "slow" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# ---- cli fixtures ----
# The `pipeyard` command line (tests/test_cli_*.py), always through click's runner.


@pytest.fixture
def invoke():
    """``invoke("list")`` / ``invoke("verify", path, input="y\\n")``: run the CLI, return the result."""
    from click.testing import CliRunner

    from pipeyard.cli import cli

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=input)

    return run


@pytest.fixture
def contributor_checkout(tmp_path: Path) -> Path:
    """An empty checkout layout: ``community/`` and ``tests/`` under a fresh folder."""
    root = tmp_path / "checkout"
    (root / "community").mkdir(parents=True)
    (root / "tests").mkdir()
    return root


_COMMUNITY_HEADER = '''# /// script
# requires-python = ">=3.10"
# dependencies = {dependencies}
#
# [tool.pipeyard]
# requires-core = ">=0.1"
# summary = "A test pipeline."
# tags = ["test"]
# ///
"""A test pipeline.

Usage::

    pipe = DiffusionPipeline.from_pretrained("some/model", custom_pipeline="{name}")
"""
'''


def community_source(name: str = "demo_pipe", class_name: str = "DemoPipeline", body: str = "",
                     dependencies: str = "[]") -> str:
    """The text of a community file that passes `pipeyard verify` (given a test for it)."""
    header = _COMMUNITY_HEADER.format(name=name, dependencies=dependencies)
    return pipeline_source(class_name, body, header)


@pytest.fixture
def community_text():
    """``community_text(name=..., class_name=..., body=..., dependencies='["x"]')``."""
    return community_source


# ---- generate fixtures ----
# pipeyard.generate's Ray engine (tests/test_generate_ray.py, tests/reliability/test_generate_faults.py).


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray cluster with 2 CPUs for the session; everything it writes stays in temp folders
    (``_temp_dir``, ``RAY_TMPDIR``, the workers' ``PIPEYARD_HOME`` and Hub cache; token auth off, so
    nothing goes to ``~/.ray``). Shut down when the session ends."""
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="pyray-")  # short: Ray's socket paths must fit 107 bytes
    home = tmp_path_factory.mktemp("ray-workers-home")
    env = {"RAY_TMPDIR": temp, "RAY_AUTH_MODE": "disabled", "PIPEYARD_HOME": str(home / "pipeyard"),
           "HF_HOME": str(home / "hf"), "HF_HUB_CACHE": str(home / "hf" / "hub")}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the cluster's processes inherit these
    try:
        ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)

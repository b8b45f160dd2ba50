"""Resolve + verify + import of a custom pipeline: pipeyard's host against diffusers' loader.

Two sources, the same pipeline file for both libraries (each subclasses its own
``DiffusionPipeline``):

* ``local``  a local ``.py`` file;
* ``hub``    a repo served by a local olah Hub mirror (git repo, offline mode, 127.0.0.1).

``cold`` is the first load of a file never seen (empty caches; a new file name or repo each
run, so neither library can reuse an import); ``warm`` is loading the same pipeline again in
the same process. Both libraries are imported before timing, so their import cost is not
counted. The median of ``--runs`` runs is reported, with pipeyard / diffusers ratios.
Goal: warm <= 10 ms, and faster than diffusers.

    .venv/bin/python bench/custom_pipeline.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PIPELINE = '''\
from {lib} import DiffusionPipeline
from .helpers import VALUE  # diffusers cannot follow `from . import helpers`


class BenchPipeline(DiffusionPipeline):
    """Pipeline {tag}."""

    def __init__(self, unet=None, scheduler=None):
        super().__init__()

    def __call__(self):
        return VALUE
'''
HELPERS = "VALUE = 1\n"
LOCAL_PIPELINE = PIPELINE.replace("from .helpers import VALUE", "VALUE = 1")


def median_ms(function: Callable[[int], object], runs: int) -> float:
    timings = []
    for index in range(runs):
        start = time.perf_counter()
        function(index)
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


# --------------------------------------------------------------------------- olah


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_repo(mirrors: Path, repo_id: str, files: dict[str, str]) -> None:
    repo = mirrors / "models" / repo_id
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench")


def start_olah(root: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    config = root / "olah.toml"
    config.write_text(textwrap.dedent(f"""
        [basic]
        host = "127.0.0.1"
        port = {port}
        repos-path = "{root / 'repos'}"
        mirrors-path = ["{root / 'mirrors'}"]
        mirror-netloc = "127.0.0.1:{port}"
        mirror-lfs-netloc = "127.0.0.1:{port}"
        [accessibility]
        offline = true
    """))
    with open(root / "olah.log", "wb") as log:
        process = subprocess.Popen([str(Path(sys.executable).with_name("olah-cli")), "-c", str(config)],
                                   cwd=root, stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("olah did not start")


# --------------------------------------------------------------------------- the two loaders


def pipeyard_loader():
    from pipeyard.host import load_pipeline_class

    return lambda spec: load_pipeline_class(spec["pipeyard"], trust_remote_code=True)


def diffusers_loader():
    from diffusers.utils.dynamic_modules_utils import get_class_from_dynamic_module

    def load(spec):
        location, module_file, revision = spec["diffusers"]
        return get_class_from_dynamic_module(location, module_file, revision=revision, trust_remote_code=True)

    return load


def local_specs(root: Path, runs: int) -> list[dict[str, object]]:
    """One new file per run (a new name too: diffusers caches modules by file name)."""
    specs = []
    for index in range(runs + 1):
        for lib in ("pipeyard", "diffusers"):
            (root / lib).mkdir(parents=True, exist_ok=True)
            (root / lib / f"bench_{index}.py").write_text(LOCAL_PIPELINE.format(lib=lib, tag=index))
        specs.append({"pipeyard": str(root / "pipeyard" / f"bench_{index}.py"),
                      "diffusers": (str(root / "diffusers"), f"bench_{index}.py", None)})
    return specs


def hub_specs(mirrors: Path, runs: int) -> list[dict[str, object]]:
    """One new repo per run and library, with a relatively imported sibling."""
    specs = []
    for index in range(runs + 1):
        for lib in ("pipeyard", "diffusers"):
            make_repo(mirrors, f"bench/{lib}-{index}", {"pipeline.py": PIPELINE.format(lib=lib, tag=index),
                                                        "helpers.py": HELPERS})
        # olah's offline mirror answers repo info only for an explicit revision.
        specs.append({"pipeyard": f"bench/pipeyard-{index}", "diffusers": (f"bench/diffusers-{index}", "pipeline.py", "main")})
    return specs


def measure(name: str, specs: list[dict[str, object]], loaders: dict[str, Callable], runs: int) -> list[str]:
    rows = []
    for lib, load in loaders.items():
        cold = median_ms(lambda i: load(specs[i]), runs)
        load(specs[runs])
        warm = median_ms(lambda i: load(specs[runs]), runs)
        rows.append((lib, cold, warm))
    (_, p_cold, p_warm), (_, d_cold, d_warm) = rows
    lines = [f"{name:6} {lib:9} cold {cold:8.2f} ms   warm {warm:8.3f} ms" for lib, cold, warm in rows]
    lines.append(f"{name:6} ratio     cold {p_cold / d_cold:8.2f}      warm {p_warm / d_warm:8.3f}   (pipeyard / diffusers)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pipeyard-bench-"))
    olah, endpoint = start_olah(root)
    # Both libraries read these at import time (diffusers) or call time (pipeyard).
    os.environ.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(root / "hf"), "PIPEYARD_HOME": str(root / "py"),
                       "HF_MODULES_CACHE": str(root / "hf-modules"), "HF_HUB_DISABLE_TELEMETRY": "1",
                       "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    try:
        import diffusers
        import pipeyard

        pipeyard.DiffusionPipeline, diffusers.DiffusionPipeline  # noqa: B018 - import both before timing
        loaders = {"pipeyard": pipeyard_loader(), "diffusers": diffusers_loader()}
        lines = measure("local", local_specs(root / "local", args.runs), loaders, args.runs)
        lines += measure("hub", hub_specs(root / "mirrors", args.runs), loaders, args.runs)
    finally:
        olah.terminate()
        olah.wait(timeout=10)
    print(f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

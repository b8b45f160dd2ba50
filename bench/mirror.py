"""Loading a community name from diffusers' mirror, and a repository's own component class.

* ``mirror``     ``load_pipeline_class(name)`` of a name pipeyard does not bundle, read from a
  mirror-shaped Hub dataset (``v<release>/<name>.py``) served by a local olah on 127.0.0.1:
  ``cold`` is a name never loaded (a new file each run), ``warm`` the same name again in the
  process, ``record`` the same name with the in-process state dropped (what a new process
  does: read the resolution record, re-hash the stored file, import). Hub requests are counted.
* ``component``  ``host.load_component_class`` of a tiny local folder whose unet is
  ``["my_unet", "MyUNet"]`` with ``unet/my_unet.py`` (cold: a new module each run; warm: the
  same), next to the whole ``DDPMPipeline.from_pretrained`` of that folder.

The median of ``--runs`` runs is reported. pipeyard only: diffusers' community lookup asks
PyPI for its release list first, which this offline machine cannot reach.

    .venv/bin/python bench/mirror.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from custom_pipeline import _git, median_ms, start_olah  # noqa: E402 - the bench's own olah helpers

MIRROR_FILE = '''\
from diffusers import DiffusionPipeline


class Bench{index}Pipeline(DiffusionPipeline):
    def __init__(self, unet=None, scheduler=None):
        super().__init__()
'''
COMPONENT = '''\
import torch

from pipeyard import ModelMixin, register_to_config


class MyUNet(ModelMixin):
    """Tag {index}."""

    @register_to_config
    def __init__(self, width: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)
'''


def make_mirror(mirrors: Path, folder: str, runs: int) -> str:
    repo_id = "bench/community-mirror"
    repo = mirrors / "datasets" / repo_id
    (repo / folder).mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for index in range(runs + 1):
        (repo / folder / f"bench_{index}.py").write_text(MIRROR_FILE.format(index=index))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench")
    return repo_id


def bench_mirror(runs: int, requests: list[str]) -> list[str]:
    from pipeyard import host
    from pipeyard.host import importer

    load = host.load_pipeline_class
    requests.clear()
    cold = median_ms(lambda i: load(f"bench_{i}", trust_remote_code=True), runs)
    cold_requests = len(requests) / runs
    load(f"bench_{runs}", trust_remote_code=True)
    requests.clear()
    warm = median_ms(lambda i: load(f"bench_{runs}", trust_remote_code=True), runs)

    def from_record(_: int) -> None:
        host._VERIFIED.clear()
        for name in [n for n in sys.modules if n.startswith(importer.PACKAGE_PREFIX)]:
            del sys.modules[name]
        load(f"bench_{runs}", trust_remote_code=True)

    record = median_ms(from_record, runs)
    return [
        f"mirror    cold {cold:8.2f} ms ({cold_requests:.0f} Hub requests each)",
        f"mirror    warm {warm:8.3f} ms   record {record:6.2f} ms ({len(requests)} Hub requests in all)",
    ]


def make_folder(root: Path, index: int) -> Path:
    """A tiny DDPM folder whose unet is the repository's own ``MyUNet`` (a new module per index)."""
    import torch

    from pipeyard import DDPMScheduler

    folder = root / f"custom-{index}"
    DDPMScheduler(num_train_timesteps=10).save_pretrained(folder / "scheduler")
    namespace: dict = {}
    exec(compile(COMPONENT.format(index=index), "<bench>", "exec"), namespace)  # noqa: S102 - the bench's text
    torch.manual_seed(0)
    namespace["MyUNet"]().save_pretrained(folder / "unet")
    (folder / "unet" / "my_unet.py").write_text(COMPONENT.format(index=index))
    (folder / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "unet": ["my_unet", "MyUNet"], "scheduler": ["pipeyard", "DDPMScheduler"]}))
    return folder


def bench_component(root: Path, runs: int) -> list[str]:
    from pipeyard import DDPMPipeline, hub
    from pipeyard.host import load_component_class

    folders = [make_folder(root, i) for i in range(runs + 1)]
    sources = [hub.open_source(folder) for folder in folders]
    entry = ("my_unet", "MyUNet")
    cold = median_ms(lambda i: load_component_class("unet", entry, sources[i], trust_remote_code=True), runs)
    warm = median_ms(lambda i: load_component_class("unet", entry, sources[runs], trust_remote_code=True), runs)
    whole = median_ms(lambda i: DDPMPipeline.from_pretrained(folders[runs], trust_remote_code=True), runs)
    return [
        f"component class   cold {cold:8.2f} ms   warm {warm:8.3f} ms   (host: read, verify, gate, store, import)",
        f"component whole from_pretrained, warm class: {whole:.2f} ms (config + weights + scheduler)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pipeyard-bench-mirror-"))
    olah, endpoint = start_olah(root)
    os.environ.update({"HF_ENDPOINT": endpoint, "HF_HOME": str(root / "hf"), "PIPEYARD_HOME": str(root / "py"),
                       "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    try:
        import httpx2

        from pipeyard.host import mirror

        requests: list[str] = []
        original = httpx2.HTTPTransport.handle_request

        def counting(self, request):  # type: ignore[no-untyped-def]
            requests.append(str(request.url))
            return original(self, request)

        httpx2.HTTPTransport.handle_request = counting  # type: ignore[method-assign]
        os.environ["PIPEYARD_DIFFUSERS_MIRROR"] = make_mirror(root / "mirrors", mirror.default_folder(), args.runs)
        lines = bench_mirror(args.runs, requests)
        lines += bench_component(root / "folders", args.runs)
    finally:
        olah.terminate()
        olah.wait(timeout=10)
    print(f"median of {args.runs} runs, Python {sys.version.split()[0]}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

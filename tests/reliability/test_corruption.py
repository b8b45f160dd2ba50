"""Files damaged on disk: caught by their sha256 before use, fetched anew online, refused offline.

Two stores are damaged in every way a disk or a hand can: a byte flipped, the file truncated,
deleted, replaced by a folder, its permissions removed, or replaced by other (valid, hostile)
code. The module store (a remote pipeline, with its resolution record) and the Hub cache's
model weights (huggingface_hub names each blob by its ETag, the sha256 of an LFS file; see
:mod:`pipeyard.hub_integrity`). Offline the load is a typed error; online the damaged copy is
dropped and fetched again; never is a damaged byte imported or loaded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from pipeyard import constants, errors
from pipeyard.host import load_pipeline_class

from .faulty_hub import FaultyHub

REPO = "alice/damaged"
DAMAGES = ["flip", "truncate", "delete", "folder", "chmod 000", "replace"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _damage(path: Path, how: str, marker: Path) -> None:
    data = path.read_bytes()
    if how == "flip":
        path.write_bytes(data[:10] + bytes([data[10] ^ 0x01]) + data[11:])
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "delete":
        path.unlink()
    elif how == "folder":
        path.unlink()
        path.mkdir()
        (path / "inside").write_bytes(data)
    elif how == "chmod 000":
        path.chmod(0)
    elif how == "replace":  # other code, which would leave a marker if it ever ran
        path.write_text(f"open({str(marker)!r}, 'w').close()\n" + data.decode(errors="replace"))


def _undamaged_or_refused(how: str) -> bool:
    """chmod 000 does not stop root from reading: the bytes are intact, and the load works."""
    return how == "chmod 000" and IS_ROOT


# --------------------------------------------------------------------------- module store


@pytest.fixture
def community_server(monkeypatch: pytest.MonkeyPatch, pipeline_text):
    server = FaultyHub(REPO, {"damaged.py": pipeline_text("DamagedPipeline").encode()})
    monkeypatch.setenv("PIPEYARD_COMMUNITY_URL", server.raw_template)
    yield server
    server.close()


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_stored_package_is_refused_offline_and_fetched_anew_online(
    community_server, how, tmp_path, monkeypatch, tally, invoke
):
    t = tally("corruption: module store")
    marker = tmp_path / "EXECUTED"
    load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True)
    digest = hashlib.sha256(community_server.files["damaged.py"]).hexdigest()
    stored = constants.pipeyard_home() / "modules" / digest / "damaged.py"
    _damage(stored, how, marker)
    t.cases, t.faults = 1, 1
    fetched_before = community_server.count("GET /raw/")

    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    if _undamaged_or_refused(how):
        assert load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True).__name__ == "DamagedPipeline"
    else:
        with pytest.raises(errors.PipelineVerificationError, match="no longer match") as caught:
            load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True)
        assert digest in str(caught.value) and "load again online" in str(caught.value)

    monkeypatch.delenv("PIPEYARD_OFFLINE")
    cls = load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True)
    assert cls.__name__ == "DamagedPipeline"
    if not _undamaged_or_refused(how):
        assert community_server.count("GET /raw/") == fetched_before + 1, "not fetched anew"
    stored.chmod(0o644) if stored.exists() else None
    result = invoke("cache", "verify")
    assert result.exit_code == 0, result.output
    if marker.exists():
        t.untrusted_runs += 1
    assert not marker.exists(), "damaged code was executed"


@pytest.mark.parametrize("how", ["flip", "delete", "folder"])
def test_a_damaged_manifest_is_refused_offline_and_rewritten_online(community_server, how, tmp_path, monkeypatch, tally):
    t = tally("corruption: module store")
    load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True)
    digest = hashlib.sha256(community_server.files["damaged.py"]).hexdigest()
    manifest = constants.pipeyard_home() / "modules" / digest / "MANIFEST.json"
    if how == "flip":
        manifest.write_bytes(manifest.read_bytes().replace(b'"main"', b'"mAin"'))
    else:
        _damage(manifest, how, tmp_path / "unused")
    t.cases, t.faults = 1, 1
    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    with pytest.raises((errors.PipelineVerificationError, errors.OfflineError)) as caught:
        load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True)
    assert "damaged" in str(caught.value)
    monkeypatch.delenv("PIPEYARD_OFFLINE")
    assert load_pipeline_class("damaged", custom_revision="v1", trust_remote_code=True).__name__ == "DamagedPipeline"
    assert manifest.is_file()


# --------------------------------------------------------------------------- Hub cache weights


@pytest.fixture
def weights_server(monkeypatch: pytest.MonkeyPatch, tiny_ddpm_folder: Path):
    unet = tiny_ddpm_folder / "unet"
    files = {f"unet/{p.name}": p.read_bytes() for p in unet.iterdir() if p.is_file()}
    server = FaultyHub(REPO, files)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    yield server
    server.close()


def _weights_blob(server: FaultyHub) -> Path:
    data = server.files["unet/diffusion_pytorch_model.safetensors"]
    blobs = list(constants.hub_cache_dir().glob("models--*/blobs"))
    assert len(blobs) == 1, blobs
    return blobs[0] / hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "folder", "chmod 000"])
def test_damaged_weights_in_the_hub_cache_are_refused_offline_and_downloaded_anew_online(
    weights_server, how, tmp_path, monkeypatch, tally
):
    import torch

    from pipeyard import UNet2DModel

    t = tally("corruption: Hub-cache weights")
    # Copies: the loaded tensors may map the cached file, which the damage below changes.
    first = {name: tensor.clone() for name, tensor in UNet2DModel.from_pretrained(REPO, subfolder="unet").state_dict().items()}
    blob = _weights_blob(weights_server)
    _damage(blob, how, tmp_path / "unused")
    t.cases, t.faults = 1, 1
    downloads = weights_server.count("GET /alice/damaged/resolve/")

    monkeypatch.setenv("PIPEYARD_OFFLINE", "1")
    if _undamaged_or_refused(how):
        UNet2DModel.from_pretrained(REPO, subfolder="unet")
    else:
        with pytest.raises((errors.HubDownloadError, errors.OfflineError)) as caught:
            UNet2DModel.from_pretrained(REPO, subfolder="unet")
        assert "diffusion_pytorch_model.safetensors" in str(caught.value) or "unet" in str(caught.value)
        if how in ("flip", "truncate"):  # a missing blob (deleted, a folder) is not cached: OfflineError
            assert isinstance(caught.value, errors.HubDownloadError) and "sha256" in str(caught.value)

    monkeypatch.delenv("PIPEYARD_OFFLINE")
    again = UNet2DModel.from_pretrained(REPO, subfolder="unet")
    for name, tensor in first.items():
        if not torch.equal(tensor, again.state_dict()[name]):
            t.data_lost += 1
    assert t.data_lost == 0
    if not _undamaged_or_refused(how):
        assert weights_server.count("GET /alice/damaged/resolve/") > downloads, "not downloaded anew"
    shutil.rmtree(tmp_path / "unused", ignore_errors=True)


def test_a_verified_blob_is_not_hashed_again_on_a_warm_load(weights_server, monkeypatch):
    """The cost: one hash per blob when it arrives; a warm load only compares a stat stamp."""
    from pipeyard import UNet2DModel, hub_integrity

    UNet2DModel.from_pretrained(REPO, subfolder="unet")
    hashed: list[Path] = []
    original = hub_integrity._digest
    monkeypatch.setattr(hub_integrity, "_digest", lambda blob, *a: hashed.append(blob) or original(blob, *a))
    UNet2DModel.from_pretrained(REPO, subfolder="unet")
    assert hashed == []


def test_verify_hub_files_always_hashes_on_every_load(weights_server, monkeypatch):
    from pipeyard import UNet2DModel, hub_integrity

    UNet2DModel.from_pretrained(REPO, subfolder="unet")
    hashed: list[Path] = []
    original = hub_integrity._digest
    monkeypatch.setattr(hub_integrity, "_digest", lambda blob, *a: hashed.append(blob) or original(blob, *a))
    monkeypatch.setenv("PIPEYARD_VERIFY_HUB_FILES", "always")
    UNet2DModel.from_pretrained(REPO, subfolder="unet")
    assert len(hashed) == len(weights_server.files)
    monkeypatch.setenv("PIPEYARD_VERIFY_HUB_FILES", "sometimes")
    with pytest.raises(errors.EnvironmentVariableError, match="PIPEYARD_VERIFY_HUB_FILES='sometimes'.*always"):
        UNet2DModel.from_pretrained(REPO, subfolder="unet")

"""A pipeline package is a closed set of files: nothing outside its root is read, stored or printed.

Each refusal is an UnsafePackageFileError raised before the file is read. The secret tests put
a random marker in a file outside the package and assert it appears nowhere: not in the module
store under PIPEYARD_HOME, not in the error, not in the CLI's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from pipeyard import errors, hub
from pipeyard.host import boundary, fetch, load_pipeline_class, load_repository_pipeline_class

SECRET = f"TOPSECRET_{uuid.uuid4().hex}"

#: A pipeline file importing its sibling ``helper``.
EVIL = "from pipeyard import DiffusionPipeline\nfrom . import helper\n\n\nclass Evil(DiffusionPipeline):\n    pass\n"


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A file outside every package, whose first line would be quoted by a syntax error."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.py"
    path.write_text(f"{SECRET} = (\n", encoding="utf-8")
    return path


def _package(tmp_path: Path, main: str = "evil.py", text: str = EVIL) -> Path:
    folder = tmp_path / "pkg"
    folder.mkdir(exist_ok=True)
    (folder / main).write_text(text, encoding="utf-8")
    return folder


def _assert_secret_nowhere(home: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    for path in home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), path


def _bundled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, community: Path) -> None:
    import pipeyard._bundled

    registry = tmp_path / "registry"
    registry.mkdir()
    entry = {"name": "evil", "file": "evil.py", "sha256": "0" * 64, "class": "Evil", "summary": "",
             "added-in": "0.1.0", "tags": [], "dependencies": [], "components": []}
    index = {"version": 2, "pipelines": [entry], "hub": [], "mirror": []}
    (registry / "index.json").write_text(json.dumps(index), encoding="utf-8")
    folders = {"community": community, "registry": registry}
    monkeypatch.setattr(pipeyard._bundled, "bundled_dir", lambda kind: folders[kind])


def _plugin(folder: Path) -> None:
    from pipeyard import plugins

    class Index:
        @plugins.hookimpl
        def pipeyard_resolve_pipeline(self, name, revision):
            return folder / "evil.py" if name == "acme/evil" else None

    plugins.register(Index(), name="evil-index")


def _load(kind: str, folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type:
    """Load the package in ``folder`` (pipeline file ``evil.py``) as a source of ``kind``."""
    if kind == "local file":
        return load_pipeline_class(str(folder / "evil.py"))
    if kind == "local folder":
        (folder / "pipeline.py").write_bytes((folder / "evil.py").read_bytes())
        return load_pipeline_class(str(folder))
    if kind == "bundled":
        _bundled(monkeypatch, tmp_path, folder)
        return load_pipeline_class("evil")
    if kind == "plugin":
        _plugin(folder)
        return load_pipeline_class("acme/evil", trust_remote_code=True)
    if kind == "model folder":
        return load_repository_pipeline_class({"_class_name": ["evil", "Evil"]}, str(folder), trust_remote_code=True)
    assert kind == "opened model folder"
    source = hub.open_source(str(folder))
    return load_repository_pipeline_class({"_class_name": ["evil", "Evil"]}, source, trust_remote_code=True)


SOURCE_KINDS = ["local file", "local folder", "bundled", "plugin", "model folder", "opened model folder"]


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_a_sibling_linked_outside_the_package_is_refused_unread(kind, tmp_path, secret_file, isolated_home, monkeypatch):
    folder = _package(tmp_path)
    (folder / "helper.py").symlink_to(secret_file)
    with pytest.raises(errors.UnsafePackageFileError) as caught:
        _load(kind, folder, monkeypatch, tmp_path)
    message = str(caught.value)
    assert caught.value.path == str(folder / "helper.py")
    assert "symbolic link" in message and "outside the package root" in message and "Copy the module" in message
    _assert_secret_nowhere(isolated_home, message)


def test_a_link_inside_the_root_loads_and_one_leading_out_does_not(tmp_path, secret_file, isolated_home):
    folder = _package(tmp_path)
    (folder / "impl").mkdir()
    (folder / "impl" / "real_helper.py").write_text("VALUE = 1\n")
    (folder / "helper.py").symlink_to(folder / "impl" / "real_helper.py")
    assert load_pipeline_class(str(folder / "evil.py")).__name__ == "Evil"
    (folder / "helper.py").unlink()
    (folder / "helper.py").symlink_to(os.path.relpath(secret_file, folder))  # a relative link out
    with pytest.raises(errors.UnsafePackageFileError, match="outside the package root"):
        load_pipeline_class(str(folder / "evil.py"))
    _assert_secret_nowhere(isolated_home)


def test_a_pipeline_file_linked_outside_its_folder_is_refused(tmp_path, secret_file, isolated_home):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "pipeline.py").symlink_to(secret_file)
    with pytest.raises(errors.UnsafePackageFileError) as caught:
        load_pipeline_class(str(folder))
    assert caught.value.path == str(folder / "pipeline.py")
    _assert_secret_nowhere(isolated_home, str(caught.value))


def test_a_folder_linked_outside_is_refused(tmp_path, secret_file, isolated_home):
    folder = _package(tmp_path, text=EVIL.replace("from . import helper", "from .helpers import secret"))
    (folder / "helpers").symlink_to(secret_file.parent, target_is_directory=True)
    with pytest.raises(errors.UnsafePackageFileError, match="helpers/secret.py is a symbolic link, or lies under one"):
        load_pipeline_class(str(folder / "evil.py"))
    _assert_secret_nowhere(isolated_home)


def test_a_relative_import_above_the_root_is_refused_before_anything_runs(tmp_path, isolated_home):
    marker = tmp_path / "ran.txt"
    (tmp_path / "secret.py").write_text(f"{SECRET} = (\n")
    text = f"open({str(marker)!r}, 'w').close()\n{EVIL.replace('from . import helper', 'from .. import secret')}"
    folder = _package(tmp_path, text=text)
    with pytest.raises(errors.UnsafePackageFileError) as caught:
        load_pipeline_class(str(folder / "evil.py"))
    assert caught.value.path == str(folder / "evil.py")
    assert "`from .. import ...` (line 3) reaches above the package root" in str(caught.value)
    assert not marker.exists()
    _assert_secret_nowhere(isolated_home, str(caught.value))


def test_a_remote_package_importing_above_its_root_is_refused():
    files = {"pipeline.py": b"from ..outside import x\n", "sub/mod.py": b"from ... import y\n"}
    with pytest.raises(errors.UnsafePackageFileError, match=r"from \.\.outside import \.\.\.` \(line 1\)"):
        fetch.collect_package("pipeline.py", files.get, origin="https://example.invalid/repo")
    with pytest.raises(errors.UnsafePackageFileError, match="reaches above the package root"):
        fetch.collect_package("sub/mod.py", files.get, origin="repo")


def _load_in_thread(path: Path) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            load_pipeline_class(str(path))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    return thread, raised


def test_a_fifo_where_a_module_should_be_is_refused_without_blocking(tmp_path):
    folder = _package(tmp_path)
    os.mkfifo(folder / "helper.py")
    thread, raised = _load_in_thread(folder / "evil.py")
    if thread.is_alive():  # release the blocked open, then fail
        os.close(os.open(folder / "helper.py", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a FIFO in the package blocked")
    assert len(raised) == 1 and isinstance(raised[0], errors.UnsafePackageFileError)
    assert "helper.py is a FIFO (named pipe), not a regular file" in str(raised[0])


def test_a_socket_or_a_folder_where_a_module_should_be_is_refused(tmp_path):
    folder = _package(tmp_path)
    (folder / "helper.py").mkdir()
    with pytest.raises(errors.UnsafePackageFileError, match="helper.py is a folder where a module file is expected"):
        load_pipeline_class(str(folder / "evil.py"))
    (folder / "helper.py").rmdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "helper.py"))
    except OSError as exc:  # a path too long for a socket
        pytest.skip(f"cannot bind a socket there: {exc}")
    with server, pytest.raises(errors.UnsafePackageFileError, match="helper.py is a socket, not a regular file"):
        load_pipeline_class(str(folder / "evil.py"))


def test_files_over_the_size_cap_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(boundary, "MAX_PACKAGE_FILE_BYTES", 1000)
    folder = _package(tmp_path)
    (folder / "helper.py").write_text("# padding\n" * 200)
    with pytest.raises(errors.UnsafePackageFileError, match="helper.py holds more than 1000 bytes"):
        load_pipeline_class(str(folder / "evil.py"))
    remote = {"pipeline.py": EVIL.encode(), "helper.py": b"#" * 1001}
    with pytest.raises(errors.UnsafePackageFileError, match="helper.py holds more than 1000 bytes"):
        fetch.collect_package("pipeline.py", remote.get, origin="repo")
    assert fetch.collect_package("pipeline.py", {"pipeline.py": b"#" * 1000}.get, origin="repo")


def test_names_outside_the_package_are_refused_by_the_folder_reader(tmp_path, secret_file):
    read = fetch.folder_reader(tmp_path / "pkg")
    for name in ("../outside/secret.py", "/etc/passwd", "a/./b.py", ""):
        with pytest.raises(errors.UnsafePackageFileError, match="is not a path inside the package"):
            read(name)


def test_verify_refuses_a_sibling_linked_outside_and_prints_nothing_of_it(invoke, tmp_path, secret_file, isolated_home):
    folder = _package(tmp_path)
    (folder / "helper.py").symlink_to(secret_file)
    result = invoke("verify", folder / "evil.py", "--no-test-check")
    assert result.exit_code == 1
    assert f"{folder / 'helper.py'}:1: error: helper.py is a symbolic link" in result.output
    _assert_secret_nowhere(isolated_home, result.output)


def test_the_digest_of_a_bom_file_is_the_sha256_of_its_bytes(tmp_path):
    data = b"\xef\xbb\xbf" + EVIL.replace("from . import helper\n", "").encode()
    (tmp_path / "bom.py").write_bytes(data)
    cls = load_pipeline_class(str(tmp_path / "bom.py"))
    assert cls.__pipeyard_provenance__.sha256 == hashlib.sha256(data).hexdigest()

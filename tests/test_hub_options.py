"""Every Hub option reaches every file a load reads: model weights, config files, a pipeline's
model_index.json and scheduler config, a custom pipeline from a Hub repo, and a module embedded
in a model repo. Served by olah (a real Hub-compatible server) on 127.0.0.1; a forwarding
proxy on 127.0.0.1 stands in for a corporate proxy."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeyard import DDIMScheduler, DiffusionPipeline, constants, errors, hub

TOKEN = "hf_pipeyard_test_token"
#: a pipeline class body with no components, so a model_index.json without any will do
NO_COMPONENTS = "\n    def __init__(self):\n        super().__init__()\n"


class SchedulerPipeline(DiffusionPipeline):
    def __init__(self, scheduler):
        super().__init__()
        self.register_modules(scheduler=scheduler)


# ---------------------------------------------------------------- what a load reads from the Hub


@dataclass
class Consumer:
    """One way a load reads a Hub repo: ``load(**hub_keywords)`` reads ``repo_id``."""

    repo_id: str
    load: Callable[..., Any]


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _model_weights(olah, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    toy_model_class(width=4).save_pretrained(tmp_path / "repo" / "model")
    repo_id, git = olah.new_repo()
    git.commit(_folder_files(tmp_path / "repo"))
    return Consumer(repo_id, lambda **kw: toy_model_class.from_pretrained(repo_id, subfolder="model", **kw))


def _config_file(olah, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    DDIMScheduler(num_train_timesteps=77).save_pretrained(tmp_path / "repo" / "scheduler")
    repo_id, git = olah.new_repo()
    git.commit(_folder_files(tmp_path / "repo"))
    return Consumer(repo_id, lambda **kw: DDIMScheduler.from_pretrained(repo_id, subfolder="scheduler", **kw))


def _pipeline_configs(olah, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    SchedulerPipeline(DDIMScheduler(num_train_timesteps=77)).save_pretrained(tmp_path / "repo")
    repo_id, git = olah.new_repo()
    git.commit(_folder_files(tmp_path / "repo"))
    return Consumer(repo_id, lambda **kw: SchedulerPipeline.from_pretrained(repo_id, **kw))


def _hub_custom_pipeline(olah, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    """A local model folder, and its pipeline code from a Hub repo (``custom_pipeline``)."""
    model = tmp_path / "local-model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "OptionsPipeline"}))
    repo_id, git = olah.new_repo()
    git.commit({"pipeline.py": pipeline_text("OptionsPipeline", body=NO_COMPONENTS)})
    return Consumer(repo_id, lambda **kw: DiffusionPipeline.from_pretrained(
        model, custom_pipeline=repo_id, trust_remote_code=True, **kw))


def _embedded_module(olah, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    """model_index.json names ``["my_pipe", "EmbeddedPipe"]``: a module of the model repo itself."""
    repo_id, git = olah.new_repo()
    git.commit({"model_index.json": json.dumps({"_class_name": ["my_pipe", "EmbeddedPipe"]}),
                "my_pipe.py": pipeline_text("EmbeddedPipe", body=NO_COMPONENTS)})
    return Consumer(repo_id, lambda **kw: DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True, **kw))


CONSUMERS = {
    "model weights": _model_weights,
    "config file": _config_file,
    "pipeline configs": _pipeline_configs,
    "hub custom pipeline": _hub_custom_pipeline,
    "embedded module": _embedded_module,
}


@pytest.fixture(params=list(CONSUMERS))
def consumer(request, olah_server, tmp_path, toy_model_class, pipeline_text) -> Consumer:
    return CONSUMERS[request.param](olah_server, tmp_path, toy_model_class, pipeline_text)


# ---------------------------------------------------------------- helpers


@pytest.fixture
def sent_headers(monkeypatch) -> list[tuple[str, str | None]]:
    """``(url, Authorization header)`` of every request huggingface_hub sends in this test."""
    import httpx2

    sent: list[tuple[str, str | None]] = []
    original = httpx2.HTTPTransport.handle_request

    def recording(self, request):
        sent.append((str(request.url), request.headers.get("authorization")))
        return original(self, request)

    monkeypatch.setattr(httpx2.HTTPTransport, "handle_request", recording)
    return sent


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1: forwards absolute-URL requests, lists what it forwarded."""

    _HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "proxy-authorization"}

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.forwarded.append(f"{self.command} {self.path}")
                target = urllib.parse.urlsplit(self.path)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ForwardProxy._HOP_BY_HOP}
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
                path = target.path + (f"?{target.query}" if target.query else "")
                upstream.request(self.command, path, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ForwardProxy._HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                length = response.getheader("content-length") if self.command == "HEAD" else str(len(body))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                upstream.close()

            do_GET = do_HEAD = _forward  # noqa: N815 - http.server's naming

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def forward_proxy():
    proxy = ForwardProxy()
    yield proxy
    proxy.close()


def _cached_repos(cache_dir: Path) -> set[str]:
    from huggingface_hub import scan_cache_dir

    return {repo.repo_id for repo in scan_cache_dir(cache_dir).repos} if cache_dir.is_dir() else set()


# ---------------------------------------------------------------- one test per option, per consumer


def test_token_is_sent_with_every_hub_request(consumer, olah_hub, sent_headers):
    consumer.load(token=TOKEN)
    to_hub = [(url, auth) for url, auth in sent_headers if url.startswith(olah_hub.endpoint)]
    assert to_hub, "the load made no Hub request"
    assert [url for url, auth in to_hub if auth != f"Bearer {TOKEN}"] == []


def test_cache_dir_receives_the_downloads(consumer, olah_hub, tmp_path):
    own_cache = tmp_path / "own-hub-cache"
    consumer.load(cache_dir=own_cache)
    assert consumer.repo_id in _cached_repos(own_cache)
    assert consumer.repo_id not in _cached_repos(constants.hub_cache_dir())


def test_local_files_only_makes_no_request_cold_or_warm(consumer, olah_hub, hub_requests):
    with pytest.raises(errors.OfflineError, match="local_files_only=True"):
        consumer.load(local_files_only=True)
    assert hub_requests == []
    consumer.load()
    hub_requests.clear()
    consumer.load(local_files_only=True)
    assert hub_requests == []


def test_proxies_carry_every_hub_request(consumer, olah_hub, forward_proxy, hub_requests):
    consumer.load(proxies={"http": forward_proxy.url})
    assert forward_proxy.forwarded, "nothing went through the proxy"
    assert len(forward_proxy.forwarded) == len(hub_requests)  # every request of the load, none around it


def test_endpoint_overrides_hf_endpoint(consumer, olah_server, monkeypatch, hub_requests):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: only the keyword can work
    consumer.load(endpoint=olah_server.endpoint)
    assert hub_requests and all(r.split(" ", 1)[1].startswith(olah_server.endpoint) for r in hub_requests)


# ---------------------------------------------------------------- revision, scoping, values


def test_model_revision_does_not_apply_to_a_hub_custom_pipeline(olah_hub, tmp_path, pipeline_text):
    """The model is pinned to its tag v1; the pipeline repo has no v1 and loads at main."""
    model_id, model_git = olah_hub.new_repo()
    model_git.commit({"model_index.json": json.dumps({"_class_name": "OptionsPipeline"})}, tag="v1")
    pipe_id, pipe_git = olah_hub.new_repo()
    pipe_git.commit({"pipeline.py": pipeline_text("OptionsPipeline", body=NO_COMPONENTS)})
    pipe = DiffusionPipeline.from_pretrained(model_id, revision="v1", custom_pipeline=pipe_id, trust_remote_code=True)
    assert type(pipe).__name__ == "OptionsPipeline"
    with pytest.raises(errors.HubError, match=pipe_id):  # asking the pipeline repo for v1 fails
        DiffusionPipeline.from_pretrained(
            model_id, custom_pipeline=pipe_id, custom_revision="v1", trust_remote_code=True)


def test_embedded_module_comes_from_the_model_revision(olah_hub, pipeline_text):
    repo_id, git = olah_hub.new_repo()
    index = json.dumps({"_class_name": ["my_pipe", "EmbeddedPipe"]})
    version = NO_COMPONENTS + "    VERSION = {}\n"
    git.commit({"model_index.json": index, "my_pipe.py": pipeline_text("EmbeddedPipe", body=version.format(1))},
               tag="v1")
    git.commit({"my_pipe.py": pipeline_text("EmbeddedPipe", body=version.format(2))})
    assert DiffusionPipeline.from_pretrained(repo_id, revision="v1", trust_remote_code=True).VERSION == 1
    assert DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True).VERSION == 2


def test_proxies_apply_to_their_own_load_only(olah_hub, forward_proxy, tmp_path, toy_model_class, pipeline_text):
    first = _model_weights(olah_hub, tmp_path / "a", toy_model_class, pipeline_text)
    first.load(proxies=forward_proxy.url)
    through_proxy = len(forward_proxy.forwarded)
    assert through_proxy
    second = _model_weights(olah_hub, tmp_path / "b", toy_model_class, pipeline_text)
    second.load()
    assert len(forward_proxy.forwarded) == through_proxy


def test_a_proxy_that_is_down_is_a_typed_error(olah_hub, tmp_path, toy_model_class, pipeline_text):
    consumer = _model_weights(olah_hub, tmp_path, toy_model_class, pipeline_text)
    with pytest.raises(errors.OfflineError, match="ConnectError") as caught:
        consumer.load(proxies={"all": "http://127.0.0.1:9"})
    assert consumer.repo_id in str(caught.value)


def test_options_are_one_frozen_value_whose_repr_hides_the_token():
    options = hub.HubOptions(revision="v1", token=TOKEN, proxies={"https": "proxy.local:3128"})
    assert TOKEN not in repr(options) and "v1" in repr(options)
    assert options.proxies == (("https", "http://proxy.local:3128"),)
    assert options.at("abc") == hub.HubOptions(revision="abc", token=TOKEN, proxies=options.proxies)
    assert hash(options) == hash(hub.HubOptions(revision="v1", token=TOKEN, proxies=dict(options.proxies)))
    with pytest.raises(AttributeError):
        options.revision = "v2"  # type: ignore[misc]


@pytest.mark.parametrize(("keyword", "value", "expected"), [
    ("revision", "../../outside", "without '..'"),
    ("revision", "", "a branch, tag or commit sha"),
    ("token", 42, "a token string"),
    ("proxies", {"ftp": "http://p:1"}, "keys http, https, all"),
    ("proxies", {"https": "ftp://p:1"}, "proxy URLs starting with"),
    ("proxies", ["http://p:1"], "a proxy URL"),
    ("endpoint", "hub.local", "the Hub's base URL"),
    ("local_files_only", "yes", "True or False"),
])
def test_bad_option_values_are_typed_errors_before_any_request(keyword, value, expected, hub_requests):
    with pytest.raises(errors.HubOptionError, match=expected) as caught:
        DiffusionPipeline.from_pretrained("alice/model", **{keyword: value})
    assert isinstance(caught.value, ValueError) and caught.value.option == keyword
    assert f"{keyword}=" in str(caught.value) and (keyword != "token" or "42" not in str(caught.value))
    assert hub_requests == []

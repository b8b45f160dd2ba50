"""A read-only, Hub-compatible HTTP server over local folders, for the demo (127.0.0.1 only).

It answers the three requests huggingface_hub makes to load a repository, so the demo can
show a load "from the Hub" on a machine without network:

* ``GET  /api/models/<owner>/<name>/revision/<rev>``  repo info: commit sha and file list;
* ``HEAD /<owner>/<name>/resolve/<rev>/<path>``       file metadata (commit, etag, size);
* ``GET  /<owner>/<name>/resolve/<rev>/<path>``       the file.

Every revision maps to one fixed commit, derived from the folder's content. This is a demo
tool, not a mirror: use a real Hub or a mirror for anything else.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from urllib.parse import unquote


class DemoHub:
    """Serve ``repos`` (repo id -> folder) on 127.0.0.1 until :meth:`close`.

    Example::

        with DemoHub({"demo/tiny-ddpm": folder}) as hub:
            os.environ["HF_ENDPOINT"] = hub.endpoint
            DiffusionPipeline.from_pretrained("demo/tiny-ddpm")
    """

    def __init__(self, repos: dict[str, Path]) -> None:
        self.repos = {repo_id: Path(folder) for repo_id, folder in repos.items()}
        self.commits = {repo_id: _content_commit(folder) for repo_id, folder in self.repos.items()}
        self.requests: list[str] = []
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> DemoHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def files(self, repo_id: str) -> list[str]:
        root = self.repos[repo_id]
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _content_commit(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(hashlib.sha1(path.read_bytes()).digest())
    return digest.hexdigest()


def _handler_for(hub: DemoHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(with_body=False)

        def _answer(self, with_body: bool) -> None:
            hub.requests.append(f"{self.command} {self.path}")
            parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                return self._repo_info("/".join(parts[2:4]), with_body)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._file("/".join(parts[:2]), "/".join(parts[4:]), with_body)
            self._send(404, b'{"error": "not found"}', {}, with_body)

        def _repo_info(self, repo_id: str, with_body: bool) -> None:
            if repo_id not in hub.repos:
                return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, with_body)
            info = {"id": repo_id, "sha": hub.commits[repo_id],
                    "siblings": [{"rfilename": name} for name in hub.files(repo_id)]}
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, with_body)

        def _file(self, repo_id: str, name: str, with_body: bool) -> None:
            root = hub.repos.get(repo_id)
            path = (root / name).resolve() if root is not None else None
            if path is None or root is None or root.resolve() not in path.parents or not path.is_file():
                return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, with_body)
            data = path.read_bytes()
            headers = {"X-Repo-Commit": hub.commits[repo_id], "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "Content-Type": "application/octet-stream"}
            self._send(200, data, headers, with_body)

        def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler

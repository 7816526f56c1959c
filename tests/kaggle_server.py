"""A small local stand-in for Kaggle's API, for testing the real kaggle client offline.

The kaggle client (2.2.x) talks to it when run with ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` (calls go to
http://localhost), ``HTTP_PROXY=http://127.0.0.1:<port>`` and an empty ``NO_PROXY`` (requests then carries every
call to this server, whatever port), and ``KAGGLE_USERNAME``/``KAGGLE_KEY`` (or ``KAGGLE_API_TOKEN``).
``FakeKaggle.env()`` gives exactly those variables.

Request and response shapes follow the installed ``kagglesdk`` (competitions/types/competition_api_service.py):
every call is a JSON POST to ``/api/v1/<service>/<Method>``:

- ``StartSubmissionUpload`` {competitionName, contentLength, lastModifiedEpochSeconds, fileName} -> {token, createUrl}
- ``PUT <createUrl>`` with the raw bytes -> 200
- ``CreateSubmission`` {competitionName, blobFileTokens, submissionDescription} -> {message, ref}
- ``ListSubmissions`` {competitionName, ...} -> {submissions: [ApiSubmission], nextPageToken}
- ``GetSubmissionLimits`` {competitionName} -> {numToday, numTotal, numAllowedNow, limitedByTotal}
- ``DownloadDataFiles`` {competitionName} -> 302 to ``/files/<slug>.zip``, served with ``Content-Length``
- ``security.OAuthService/IntrospectToken`` {token} -> {active, username} (for ``KAGGLE_API_TOKEN``)

Failure modes (``FakeKaggle.fail``): ``"server-error"`` answers 500 to every API call, ``"refuse-upload"`` answers
403 to the PUT (the client then returns "Could not submit to competition" without raising), ``"rules"`` answers
403 to a download the way Kaggle does before the rules are accepted, ``"bad-credentials"`` answers 401.

It listens on 127.0.0.1 only, serves from a daemon thread, and stops itself after ``lifetime`` seconds or
``max_requests`` requests, whichever comes first. It never logs request headers (they carry credentials).

Standalone: ``python -m tests.kaggle_server --port 8765 --competition digits-demo --archive data.zip``.
"""
from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

API = "/api/v1/"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."


class FakeKaggle:
    """The server's state: known competitions, received uploads, submissions, and the failure mode."""

    def __init__(self, username: str = "tester", key: str = "not-a-real-key-0123456789", token: str | None = None,
                 port: int = 0, lifetime: float = 900.0, max_requests: int = 500, log=None):
        self.username, self.key, self.token = username, key, token
        self.archives: dict[str, bytes] = {}
        self.answers: dict[str, dict[str, str]] = {}
        self.titles: dict[str, str] = {}
        self.uploads: dict[str, dict] = {}
        self.submissions: dict[str, list[dict]] = {}
        self.calls: list[str] = []
        self.fail: str | None = None
        self.lifetime, self.max_requests, self.log = lifetime, max_requests, log
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def add_competition(self, slug: str, archive: bytes = b"", answers: dict[str, str] | None = None,
                        title: str | None = None) -> None:
        """Serve ``archive`` (zip bytes) as ``<slug>.zip``; score uploads against ``answers`` (id -> label)."""
        self.archives[slug] = archive
        self.answers[slug] = answers or {}
        self.titles[slug] = title or slug
        self.submissions.setdefault(slug, [])

    def env(self, with_token: bool = False) -> dict[str, str]:
        """Environment variables that point the real kaggle client at this server."""
        proxy = f"http://127.0.0.1:{self.port}"
        env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": proxy, "http_proxy": proxy,
               "HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        if with_token:
            env["KAGGLE_API_TOKEN"] = self.token or ""
        else:
            env.update(KAGGLE_USERNAME=self.username, KAGGLE_KEY=self.key)
        return env

    def start(self) -> FakeKaggle:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-kaggle", daemon=True)
        self._thread.start()
        if self.lifetime:
            self._timer = threading.Timer(self.lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeKaggle:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the API -------------------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        if not header:
            return False
        kind, _, value = header.partition(" ")
        if kind == "Basic":
            try:
                user, _, key = base64.b64decode(value).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            return user == self.username and key == self.key
        return kind == "Bearer" and self.token is not None and value == self.token

    def call(self, method: str, body: dict) -> tuple[int, dict]:
        """Answer one API call: (HTTP status, JSON body)."""
        slug = body.get("competitionName", "")
        if method == "IntrospectToken":
            ok = self.token is not None and body.get("token") == self.token
            return 200, {"active": ok, "username": self.username if ok else ""}
        if method == "StartSubmissionUpload":
            if slug not in self.submissions:
                return 404, {"code": 404, "message": f"Competition '{slug}' not found"}
            token = f"blob-{len(self.uploads) + 1}"
            self.uploads[token] = {"competition": slug, "fileName": body.get("fileName", ""),
                                   "contentLength": int(body.get("contentLength", 0)), "data": None}
            return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}
        if method == "CreateSubmission":
            upload = self.uploads.get(body.get("blobFileTokens", ""))
            if upload is None or upload["data"] is None or upload["competition"] != slug:
                return 400, {"code": 400, "message": "Submission file was not uploaded"}
            ref = sum(len(s) for s in self.submissions.values()) + 1
            score = _accuracy(upload["data"], self.answers.get(slug, {}))
            self.submissions[slug].insert(0, {
                "ref": ref, "totalBytes": len(upload["data"]), "fileName": upload["fileName"],
                "date": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
                "description": body.get("submissionDescription", ""), "submittedBy": self.username,
                "status": "COMPLETE" if score is not None else "PENDING",
                "publicScore": f"{score:.5f}" if score is not None else "",
                "data": upload["data"]})
            return 200, {"message": f"Successfully submitted to {self.titles.get(slug, slug)}", "ref": ref}
        if method == "ListSubmissions":
            if slug not in self.submissions:
                return 404, {"code": 404, "message": f"Competition '{slug}' not found"}
            rows = [{k: v for k, v in s.items() if k != "data"} for s in self.submissions[slug]]
            return 200, {"submissions": rows[: int(body.get("pageSize") or 20)], "nextPageToken": ""}
        if method == "GetSubmissionLimits":
            today = len(self.submissions.get(slug, []))
            return 200, {"numToday": today, "numTotal": today, "numAllowedNow": max(0, 5 - today),
                         "limitedByTotal": False}
        return 404, {"code": 404, "message": f"unknown method {method}"}


def _accuracy(data: bytes, answers: dict[str, str]) -> float | None:
    if not answers:
        return None
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    got = {r[0]: r[1] for r in rows if len(r) >= 2}
    return sum(got.get(i) == label for i, label in answers.items()) / len(answers)


def _handler(state: FakeKaggle):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # the default writes every request line to stderr
            if state.log is not None:
                answer = args[1] if len(args) > 1 else ""
                state.log(f"fake-kaggle: {self.command} {urlsplit(self.path).path} -> {answer}")

        def _count(self) -> bool:
            with state._lock:
                state.calls.append(f"{self.command} {urlsplit(self.path).path}")
                over = len(state.calls) > state.max_requests
            if over:
                self._json(503, {"code": 503, "message": "fake server request limit reached"})
                threading.Thread(target=state.stop, daemon=True).start()
            return not over

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = self._body()
            if not self._count():
                return
            path = urlsplit(self.path).path
            if not path.startswith(API):
                return self._json(404, {"code": 404, "message": "not found"})
            method = path.rsplit("/", 1)[-1]
            if state.fail == "server-error":
                return self._json(500, {"code": 500, "message": "Internal server error"})
            if method != "IntrospectToken" and (state.fail == "bad-credentials"
                                                 or not state.authorized(self.headers.get("Authorization"))):
                return self._json(401, {"code": 401, "message": "Unauthenticated"})
            try:
                request = json.loads(body or b"{}")
            except json.JSONDecodeError:
                return self._json(400, {"code": 400, "message": "body is not JSON"})
            if method == "DownloadDataFiles":
                slug = request.get("competitionName", "")
                if state.fail == "rules":
                    return self._json(403, {"code": 403, "message": RULES_MESSAGE})
                if slug not in state.archives:
                    return self._json(404, {"code": 404, "message": f"Competition '{slug}' not found"})
                self.send_response(302)
                self.send_header("Location", f"http://localhost/files/{slug}.zip")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with state._lock:
                status, payload = state.call(method, request)
            self._json(status, payload)

        def do_PUT(self):
            data = self._body()
            if not self._count():
                return
            token = urlsplit(self.path).path.rsplit("/", 1)[-1]
            upload = state.uploads.get(token)
            if state.fail == "refuse-upload":
                return self._json(403, {"code": 403, "message": "upload refused"})
            if upload is None or len(data) != upload["contentLength"]:
                return self._json(400, {"code": 400, "message": "unknown upload or wrong length"})
            upload["data"] = data
            self._json(200, {})

        def do_GET(self):
            if not self._count():
                return
            path = urlsplit(self.path).path
            slug = Path(path).stem
            if not path.startswith("/files/") or slug not in state.archives:
                return self._json(404, {"code": 404, "message": "not found"})
            data = state.archives[slug]
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


REPO = Path(__file__).resolve().parents[1]


def client_env(home: Path, server: FakeKaggle | None = None, **extra: str) -> dict[str, str]:
    """A clean environment for a ``kip``/``make`` subprocess: project home, no stray credentials, this server."""
    import os
    import sys

    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(home), "KIP_HOME": str(home),
           "PYTHONPATH": str(REPO), "KAGGLE_CONFIG_DIR": str(home / ".kaggle-none"),
           "XDG_CONFIG_HOME": str(home / ".config-none"), "TF_CPP_MIN_LOG_LEVEL": "2", "LANG": "C.UTF-8"}
    if "TMPDIR" in os.environ:
        env["TMPDIR"] = os.environ["TMPDIR"]
    if server is not None:
        env.update(server.env())
    env.update(extra)
    return env


def make_command(*targets: str) -> list[str]:
    """``make`` on the project's Makefile from any folder, with ``kip`` run by this interpreter."""
    import sys

    venv = Path(sys.executable).parent.parent
    return ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), f"VENV={venv}",
            "-o", f"{venv}/.installed", f"KIP={sys.executable} -m kip", *targets]


def zip_folder(folder: Path) -> bytes:
    """The files under ``folder`` as zip bytes, paths relative to it (as Kaggle packs a competition)."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="local stand-in for Kaggle's API (tests only; 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--competition", action="append", default=[], help="slug to serve (repeatable)")
    parser.add_argument("--archive", help="zip to serve for the competition(s), or a folder to zip")
    parser.add_argument("--answers", help="CSV of id,label to score uploads with (a public score)")
    parser.add_argument("--fail", choices=["server-error", "refuse-upload", "rules", "bad-credentials"])
    parser.add_argument("--username", default="tester")
    parser.add_argument("--key", default="not-a-real-key-0123456789")
    parser.add_argument("--seconds", type=float, default=600, help="stop after this long")
    args = parser.parse_args(argv)
    archive = b""
    if args.archive:
        source = Path(args.archive)
        archive = zip_folder(source) if source.is_dir() else source.read_bytes()
    answers = {}
    if args.answers:
        with open(args.answers, newline="") as handle:
            answers = {row[0]: row[1] for row in list(csv.reader(handle))[1:]}
    server = FakeKaggle(username=args.username, key=args.key, port=args.port, lifetime=args.seconds,
                        max_requests=10_000,
                        log=lambda line: print(line, flush=True))
    for slug in args.competition or ["digits-demo"]:
        server.add_competition(slug, archive, answers)
    server.fail = args.fail
    server.start()
    print(f"fake-kaggle: serving {', '.join(server.archives)} on 127.0.0.1:{server.port} for {args.seconds:.0f} s",
          flush=True)
    shown = {k: ("<the --key value>" if k == "KAGGLE_KEY" else v) for k, v in server.env().items() if not k.islower()}
    print("fake-kaggle: point the kaggle client here with " + " ".join(f"{k}={v!r}" for k, v in shown.items()),
          flush=True)
    try:
        while server._thread.is_alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

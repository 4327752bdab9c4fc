"""Every package imports cleanly, the API does not pull torch in, and the client side stays light.

The light checks run in a fresh interpreter and read ``sys.modules``: gkd_client and the remote commands of
gkd_cli must load nothing of the server stack, because the base install (no extras) does not have it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gkd_cli._extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[1]
# The project's server-side packages and every module the server and worker extras provide, except pydantic:
# typer (base install) depends on it and loads it to coerce option values.
HEAVY = frozenset({"gkd_core", "service", "api", "worker", "migrations", "kombu"}).union(*EXTRA_MODULES.values()) - {
    "pydantic"
}

# A stand-in API on a free port (stdlib only) so the light checks also send real requests.
_STUB = """
import http.server, json, threading
JOB = {"id": "j1", "name": "light", "status": "queued", "spec": {"method": "gkd"},
       "created_at": "2025-01-01T00:00:00Z"}
DATASET = {"name": "d1", "layout": "images", "uri": "file:///d", "status": "valid", "classes": None,
           "report": {"ok": True, "labels": False, "splits": {"train": {"images": 3, "image_size": {
               "count": 3, "width": {"min": 40, "max": 80, "median": 64}, "height": {"min": 30, "max": 48,
               "median": 30}}}}, "problems": [], "problem_counts": {}}}

class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, payload, status=200):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/v1/jobs":
            self._send({"items": [JOB], "next_page_token": None})
        elif path == "/v1/datasets":
            self._send({"items": [DATASET]})
        elif path.startswith("/v1/datasets/"):
            self._send(DATASET)
        else:
            self._send(JOB)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(DATASET, 201)

    def log_message(self, *args):
        pass

stub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=stub.serve_forever, daemon=True).start()
URL = f"http://127.0.0.1:{stub.server_port}"
"""


def heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter and return the heavy modules it left in ``sys.modules``."""
    report = (
        "\nimport sys\n"
        f"print('LOADED=' + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", _STUB + code + report], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED="), out.stdout
    loaded: list[str] = json.loads(last.removeprefix("LOADED="))
    return loaded


@pytest.mark.parametrize(
    "package", ["api", "worker", "service", "gkd_core", "gkd_client", "gkd_cli", "gkd_cli.cli", "migrations"]
)
def test_package_imports(package: str) -> None:
    __import__(package)


def test_api_does_not_import_torch() -> None:
    code = "import sys; from api.main import create_app; create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sdk_loads_no_server_stack() -> None:
    code = """
import gkd_client
with gkd_client.Client(URL, api_key="k", retries=0) as client:
    assert client.get_job("j1").id == "j1"
    assert [job.id for job in client.list_jobs().items] == ["j1"]
"""
    assert heavy_modules_after(code) == []


def test_remote_commands_load_no_server_stack() -> None:
    code = """
from gkd_cli.cli import app
remote = ["--url", URL, "--api-key", "k"]
for argv in (["--help"], ["list", "--help"], ["submit", "--help"], ["watch", "--help"],
             ["list", *remote], ["status", "j1", *remote, "--json"],
             ["compare", "--help"], ["compare", "j1", "j1", *remote, "--json"],
             ["data", "--help"], ["data", "register", "--help"], ["data", "list", *remote],
             ["data", "show", "d1", *remote], ["data", "register", "d1", "--layout", "images", "--uri", "file:///d",
                                                 *remote]):
    code = app(argv, prog_name="gkd", standalone_mode=False)
    assert code in (None, 0), (argv, code)
"""
    assert heavy_modules_after(code) == []

"""The SDK's dataset calls against a running API server that validates real folders."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gkd_client import Client, Dataset, NotFoundError, ValidationError
from gkd_core.data.synthetic import TINY_SIZES, generate_benchmark
from tests.support.live_api import LiveServer


@pytest.fixture
def client(server: LiveServer) -> Client:
    return Client(server.url, server.api_key, retries=0)


def test_register_get_and_list_typed_datasets(server: LiveServer, client: Client) -> None:
    bench = Path(server.settings.data_dir) / "bench"
    generate_benchmark(bench, seed=0, size=32, sizes=TINY_SIZES, domains=["fog"])
    body = client.register_dataset("sdk-fog", layout="folder", uri=(bench / "fog").as_uri())
    assert body["status"] == "valid" and Dataset.from_obj(body).valid

    ds = client.get_dataset("sdk-fog")
    assert ds.valid and ds.layout == "folder" and ds.report.ok and ds.report.labels
    assert ds.report.splits["val"].pairs == 4 and ds.report.splits["val"].masks_checked == 4
    assert ds.report.classes and ds.report.classes[0] == "sky" and ds.report.total_problems == 0
    assert "sdk-fog" in [d.name for d in client.list_datasets()]

    empty = bench / "empty"
    empty.mkdir()
    invalid = Dataset.from_obj(client.register_dataset("sdk-empty", layout="folder", uri=empty.as_uri()))
    assert not invalid.valid and invalid.report.total_problems >= 1 and invalid.report.problems[0].kind == "layout"
    with pytest.raises(ValidationError) as refused:  # a URI the service cannot read is refused, not stored
        client.register_dataset("sdk-missing", layout="folder", uri=(bench / "nothing").as_uri())
    assert refused.value.errors[0].field == "uri"
    with pytest.raises(NotFoundError):
        client.get_dataset("no-such-set")


def test_options_are_sent_only_when_given() -> None:
    bodies: list[bytes] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(201, json={"name": "a", "layout": "acdc", "uri": "file:///d", "status": "valid"})

    client = Client("http://api.test", "k", transport=httpx.MockTransport(handle))
    client.register_dataset("a", layout="acdc", uri="file:///d")
    client.register_dataset("a", layout="acdc", uri="file:///d", options={"condition": "fog"})
    assert b"options" not in bodies[0] and b'"options":{"condition":"fog"}' in bodies[1].replace(b" ", b"")


def test_dataset_names_are_quoted_in_the_path() -> None:
    paths: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"name": "a b", "status": "valid", "report": None})

    Client("http://api.test", "k", transport=httpx.MockTransport(handle)).get_dataset("a b/..")
    assert paths == ["/v1/datasets/a%20b%2F.."]

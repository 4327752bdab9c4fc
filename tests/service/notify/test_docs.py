"""The receiver recipe in docs/NOTIFICATIONS.md verifies what the server signs (and nothing else)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from service.notify import signing

DOC = Path(__file__).resolve().parents[3] / "docs" / "NOTIFICATIONS.md"


def _stdlib_recipe() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "def verify(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify"]


def test_the_documented_recipe_accepts_the_server_signature_only() -> None:
    verify = _stdlib_recipe()
    body, now = b'{"id":"x","type":"job.failed"}', int(time.time())
    header = signing.signature_header("whsec_doc", now, body)
    assert verify("whsec_doc", header, body) is True
    assert verify("whsec_other", header, body) is False
    assert verify("whsec_doc", header, body + b"\n") is False
    assert verify("whsec_doc", signing.signature_header("whsec_doc", now - 3600, body), body) is False
    assert verify("whsec_doc", "garbage", body) is False


def test_the_doc_names_the_header_the_server_sends() -> None:
    assert f"{signing.HEADER}: t=" in DOC.read_text()

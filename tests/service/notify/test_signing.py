"""The server's signature header and gkd_client.verify_signature (two implementations) agree; the team
secret is shown once, rotates, and is recoverable only with the server key."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from sqlalchemy import select

from gkd_client import SIGNATURE_HEADER, SignatureError, verify_signature
from service.models import NotifySecret
from service.notify import signing
from service.notify.team_secret import SecretUnavailable, has_secret, rotate_secret, signing_secret
from tests.service.factories import make_team

SECRET = "whsec_test-secret"
BODY = b'{"id":"d1","type":"job.succeeded"}'
NOW = 1_800_000_000


def test_the_client_helper_verifies_the_server_signature() -> None:
    header = signing.signature_header(SECRET, NOW, BODY)
    assert SIGNATURE_HEADER == signing.HEADER
    assert header.startswith(f"t={NOW},v1=")
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header.endswith(expected)  # the documented recipe, computed independently
    assert verify_signature(SECRET, header, BODY, now=NOW + 10) == NOW


@pytest.mark.parametrize(
    ("secret", "body", "now", "needle"),
    [
        ("whsec_other", BODY, NOW, "does not match"),
        (SECRET, BODY + b" ", NOW, "does not match"),
        (SECRET, BODY, NOW + 301, "outside the 300 s tolerance"),
        (SECRET, BODY, NOW - 301, "outside the 300 s tolerance"),
    ],
)
def test_wrong_secret_changed_body_and_old_signatures_fail(secret: str, body: bytes, now: int, needle: str) -> None:
    header = signing.signature_header(SECRET, NOW, BODY)
    with pytest.raises(SignatureError, match=needle):
        verify_signature(secret, header, body, now=now)


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        (None, "no GKD-Signature"),
        ("", "no GKD-Signature"),
        ("v1=abc", "needs t="),
        ("t=x,v1=ab", "not a number"),
        ("t=1", "needs t="),
        ("garbage", "not key=value"),
    ],
)
def test_malformed_headers_fail(header: str | None, needle: str) -> None:
    with pytest.raises(SignatureError, match=needle):
        verify_signature(SECRET, header, BODY, now=NOW)


def test_a_replayed_timestamp_cannot_be_refreshed() -> None:
    """Changing t without the secret breaks the signature, since t is inside the signed bytes."""
    header = signing.signature_header(SECRET, NOW, BODY)
    forged = header.replace(f"t={NOW}", f"t={NOW + 3600}")
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(SECRET, forged, BODY, now=NOW + 3600)


def test_any_of_several_v1_values_may_match() -> None:
    good = signing.signature(SECRET, NOW, BODY)
    assert verify_signature(SECRET, f"t={NOW},v1={'0' * 64},v1={good}", BODY, now=NOW) == NOW


def test_secret_rotates_and_is_never_stored(session) -> None:
    team = make_team(session)
    assert not has_secret(session=session, team_id=team.id)
    with pytest.raises(SecretUnavailable, match="no notification signing secret"):
        signing_secret(session=session, team_id=team.id, server_key="k" * 32)
    first, _ = rotate_secret(session=session, team_id=team.id, server_key="k" * 32)
    assert first.startswith("whsec_") and len(first) > 40
    assert signing_secret(session=session, team_id=team.id, server_key="k" * 32) == first
    second, row = rotate_secret(session=session, team_id=team.id, server_key="k" * 32)
    assert second != first
    assert signing_secret(session=session, team_id=team.id, server_key="k" * 32) == second
    stored = session.execute(
        select(NotifySecret.nonce, NotifySecret.check).where(NotifySecret.team_id == team.id)
    ).one()
    assert second not in stored and all(part not in second for part in stored)
    assert session.scalar(select(NotifySecret).where(NotifySecret.team_id == team.id)) is row


def test_a_changed_server_key_is_detected_not_signed_with(session) -> None:
    team = make_team(session)
    rotate_secret(session=session, team_id=team.id, server_key="k" * 32)
    with pytest.raises(SecretUnavailable, match="GKD_SECRET_KEY changed"):
        signing_secret(session=session, team_id=team.id, server_key="other-key" * 4)


def test_teams_get_different_secrets(session) -> None:
    a, b = make_team(session), make_team(session)
    assert (
        rotate_secret(session=session, team_id=a.id, server_key="k" * 32)[0]
        != rotate_secret(session=session, team_id=b.id, server_key="k" * 32)[0]
    )

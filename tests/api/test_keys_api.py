"""Listing and revoking API keys: a team its own, an admin key every team's; another team's key is a 404."""

from __future__ import annotations

from service.auth import create_api_key
from service.db import session_scope
from tests.api.conftest import ApiEnv, TeamClient


def _extra_key(api: ApiEnv, team: str, *, admin: bool = False) -> tuple[str, str]:
    with session_scope(api.app.state.session_factory) as session:
        key, row = create_api_key(session=session, team_name=team, admin=admin)
        return key, row.prefix


def test_a_team_lists_and_revokes_only_its_own_keys(api: ApiEnv, team: TeamClient, other_team: TeamClient) -> None:
    second, second_prefix = _extra_key(api, team.name)
    listed = team.get("/v1/keys").json()["items"]
    assert {k["team"] for k in listed} == {team.name} and len(listed) == 2
    assert second_prefix in {k["prefix"] for k in listed} and not any("secret" in k or "key" in k for k in listed)
    assert team.get("/v1/keys", params={"team": other_team.name}).status_code == 404

    other_prefix = other_team.get("/v1/keys").json()["items"][0]["prefix"]
    assert team.client_delete(f"/v1/keys/{other_prefix}").status_code == 404  # another team's key is invisible
    assert other_team.get("/v1/keys").status_code == 200

    assert team.client_delete(f"/v1/keys/{second_prefix}").status_code == 204
    assert team.client_delete(f"/v1/keys/{second_prefix}").status_code == 204  # idempotent
    revoked = api.client.get("/v1/jobs", headers={"Authorization": f"Bearer {second}"})
    assert revoked.status_code == 401
    row = next(k for k in team.get("/v1/keys").json()["items"] if k["prefix"] == second_prefix)
    assert row["revoked_at"] is not None


def test_an_admin_key_sees_and_revokes_every_teams_keys(api: ApiEnv, team: TeamClient, other_team: TeamClient) -> None:
    admin_key, _ = _extra_key(api, "operators", admin=True)
    headers = {"Authorization": f"Bearer {admin_key}"}
    everyone = api.client.get("/v1/keys", headers=headers).json()["items"]
    assert {team.name, other_team.name, "operators"} <= {k["team"] for k in everyone}
    theirs = api.client.get("/v1/keys", headers=headers, params={"team": other_team.name}).json()["items"]
    assert {k["team"] for k in theirs} == {other_team.name}
    assert api.client.delete(f"/v1/keys/{theirs[0]['prefix']}", headers=headers).status_code == 204
    assert other_team.get("/v1/jobs").status_code == 401

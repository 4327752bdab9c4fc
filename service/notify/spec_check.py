"""Submit-time checks of a JobSpec's ``notify``: the address is public (SSRF) and the team can sign.

The URL's shape is pydantic's (service/schemas.py); this part needs DNS, the settings and the database.
The deliverer checks the address again at every send, against the address it then connects to.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.errors import field_error
from service.notify import addresses
from service.notify.team_secret import has_secret
from service.schemas import NotifySpec
from service.settings import Settings


def notify_problems(
    *, session: Session, team_id: str, notify: NotifySpec | None, settings: Settings
) -> list[dict[str, Any]]:
    """The problems (field, message, fix) of ``notify``; empty when notifications can be sent."""
    if notify is None:
        return []
    problems: list[dict[str, Any]] = []
    try:
        addresses.check_target(notify.url, allow_private=settings.notify_allow_private)
    except addresses.AddressRefused as exc:
        problems.append(field_error("notify.url", str(exc), "use a public http(s) address for the receiver"))
    except addresses.ResolutionFailed as exc:
        problems.append(field_error("notify.url", str(exc), "check the host name; it must resolve on the server"))
    if not has_secret(session=session, team_id=team_id):
        problems.append(
            field_error(
                "notify",
                "the team has no notification signing secret, so notifications could not be signed",
                "create one first (POST /v1/notify-secret, gkd notify-secret rotate) and give it to the receiver",
            )
        )
    return problems

"""Job notifications: signed webhooks sent from an outbox, never in the job's way.

- ``spec_check``: the submit-time check of a JobSpec's ``notify`` (SSRF guard, a signing secret exists).
- ``addresses``: which addresses a notification may reach (the SSRF guard, stdlib ``ipaddress``).
- ``signing``: the ``GKD-Signature`` header (HMAC-SHA256 over ``"<timestamp>.<body>"``).
- ``team_secret``: each team's signing secret, rotated and shown once.
- ``outbox``: the delivery rows a status change writes in its own transaction.
- ``deliverer``: the worker thread that sends due rows with backoff and records each attempt as a job event.

Submodules are imported by name (``from service.notify import outbox``); this package imports none of
them, because service/jobs.py imports ``outbox`` and ``deliverer`` imports service/jobs.py.
"""

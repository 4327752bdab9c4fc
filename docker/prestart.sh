#!/usr/bin/env bash
# One-shot start step (compose's `migrate` service): wait for the database, apply the Alembic
# migrations, and make sure the artifact bucket exists. Every step is idempotent, so running it
# again (or on every deploy) is safe. Configuration comes only from GKD_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."

python - <<'PY'
"""Wait up to 60 s for the database: compose's health check can pass before it accepts us."""
import logging
import time

from sqlalchemy import create_engine, text

from service.settings import get_settings

logging.basicConfig(level=logging.INFO, format="prestart: %(message)s")
url = get_settings().resolved_database_url
engine = create_engine(url, pool_pre_ping=True)
for attempt in range(60):
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        break
    except Exception as exc:  # any connection failure: wait and retry
        logging.info("database not ready (%s), attempt %d", type(exc).__name__, attempt + 1)
        time.sleep(1)
else:
    raise SystemExit("prestart: database still unreachable after 60 s")
PY

alembic -c migrations/alembic.ini upgrade head

python - <<'PY'
"""Create the artifact bucket if the store is S3 and it does not exist yet, then check access."""
from service.settings import get_settings
from service.storage import get_store

get_store(get_settings(), create_bucket=True).check()
print("prestart: database migrated, storage ready")
PY

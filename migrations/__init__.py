"""Alembic migrations for service.models (date-named revision files under versions/)."""

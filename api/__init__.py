"""The HTTP API: FastAPI routes over the service layer. Never imports torch or gkd_core training code."""

"""What every remote command shares: the server options, the SDK client and one-line errors.

Remote commands talk to a server through gkd_client only, so they run on the base install (httpx, typer,
rich, PyYAML) and never load the server stack.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, ParamSpec, TypeVar

import typer

from gkd_cli import output
from gkd_client import KEY_ENV, URL_ENV, APIError, Client, ClientError

_logger = logging.getLogger(__name__)

UrlOpt = Annotated[
    str | None, typer.Option("--url", envvar=URL_ENV, help="Server URL (default http://127.0.0.1:8000).")
]
KeyOpt = Annotated[str | None, typer.Option("--api-key", envvar=KEY_ENV, help="Team API key.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every failure into one clear line and a non-zero exit (typer's own Exit passes through)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except APIError as exc:
            output.fail(str(exc))
        except ClientError as exc:
            output.fail(str(exc))
        except OSError as exc:
            output.fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        except KeyboardInterrupt:
            output.fail("interrupted", code=130)
        except Exception as exc:  # the last resort: a CLI never shows a traceback
            _logger.debug("unexpected error", exc_info=True)
            output.fail(f"unexpected {type(exc).__name__}: {exc}")

    return wrapper


@contextmanager
def client(url: str | None, api_key: str | None) -> Iterator[Client]:
    """An SDK client for ``--url``/``--api-key`` (or ``GKD_URL``/``GKD_API_KEY``), closed afterwards."""
    with Client(url, api_key) as sdk:
        yield sdk

"""``gkd data register/list/show``: the team's datasets on a server, through gkd_client.

These are remote commands: they run on the base install and load none of the server stack (the local
``gkd data synth/validate`` live in cli_data.py). The layout names and options in the help come from
gkd_catalog, the same catalogue the server's JobSpec and dataset checks are built from.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

import gkd_catalog
from gkd_cli import output
from gkd_cli.remote import JsonOpt, KeyOpt, UrlOpt, client, one_line_errors
from gkd_client import ClientError, Dataset, ValidationError

EXIT_INVALID = 1


def _layout_line(info: gkd_catalog.LayoutInfo) -> str:
    options = f" Options: {', '.join(info.options)}." if info.options else ""
    return f"{info.name}: {info.summary}.{options}"


LAYOUT_HELP = f"Dataset layout, one of: {', '.join(gkd_catalog.LAYOUTS)}."
LAYOUTS_EPILOG = "Layouts:\n\n" + "\n\n".join(_layout_line(i) for i in gkd_catalog.LAYOUTS.values())


def parse_options(pairs: list[str], layout: str) -> dict[str, Any]:
    """``["condition=fog", "reduce_zero_label=true"]`` -> ``{"condition": "fog", "reduce_zero_label": True}``.

    Values are read as YAML scalars (true/false, numbers, [lists]); keys are checked against the layout's
    options in the catalogue when the layout is known here (the server decides otherwise).

    Raises:
        ClientError: a pair without ``=`` or an option the layout does not take.
    """
    info = gkd_catalog.LAYOUTS.get(layout)
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ClientError(f"bad --option {pair!r}: use KEY=VALUE")
        if info is not None and key not in info.options:
            takes = ", ".join(info.options) if info.options else "no options"
            raise ClientError(f"layout {layout!r} has no option {key!r} (it takes {takes})")
        try:
            options[key] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            options[key] = text
    return options


def _print_dataset(ds: Dataset) -> None:
    for view in output.dataset_views(ds):
        output.console.print(view)


def register(data_app: typer.Typer) -> None:
    """Add the remote dataset commands to ``gkd data``."""

    @data_app.command("register", epilog=LAYOUTS_EPILOG)
    @one_line_errors
    def register_dataset(
        name: Annotated[str, typer.Argument(help="Dataset name, unique in the team (letters, digits, _ - .).")],
        layout: Annotated[str, typer.Option("--layout", help=LAYOUT_HELP, show_default=False)],
        uri: Annotated[
            str, typer.Option("--uri", help="file:///path (under the server's allowed roots) or s3://bucket/prefix.")
        ],
        classes: Annotated[
            list[str] | None,
            typer.Option("--classes", help="Class names in label order; repeat, or give them comma-separated."),
        ] = None,
        option: Annotated[
            list[str] | None, typer.Option("--option", help="A layout option KEY=VALUE (see below); repeat.")
        ] = None,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait/--no-wait", help="Wait while the server is still validating a big set (default), or not."
            ),
        ] = True,
        poll: Annotated[float, typer.Option("--poll", help="Seconds between checks while waiting.", min=0.05)] = 2.0,
        timeout: Annotated[
            float | None,
            typer.Option("--timeout", help="Stop waiting after this many seconds (validation goes on).", min=0),
        ] = None,
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Register (or re-validate) a dataset; the server validates it and keeps the report.

        A large set is validated in the background: the command waits for it unless --no-wait. Exit status 1
        when the dataset is invalid (it stays registered with its report; jobs refuse it).
        """
        names = [c.strip() for given in classes or [] for c in given.split(",") if c.strip()] or None
        options = parse_options(option or [], layout)
        with client(url, api_key) as sdk:
            try:
                body = sdk.register_dataset(name, layout=layout, uri=uri, classes=names, options=options or None)
            except ValidationError as exc:
                if options and any(err.field == "options" and err.type == "extra_forbidden" for err in exc.errors):
                    raise ClientError(
                        f"the server at {sdk.base_url} does not take layout options (it refused the field "
                        "'options'); register without --option"
                    ) from exc
                raise
            ds = Dataset.from_obj(body)
            if ds.validating and wait:
                with output.err_console.status(f"validating {name} on the server (the set is large)..."):
                    ds = sdk.wait_for_dataset(name, poll_s=poll, timeout=timeout)
                body = ds.raw
        if as_json:
            output.emit_json(body)
        else:
            _print_dataset(ds)
        if ds.validating:  # --no-wait: registered, the outcome comes later
            output.err_console.print(f"still validating: gkd data show {name} tells when it is done")
            return
        if not ds.valid:
            raise typer.Exit(EXIT_INVALID)

    @data_app.command("list")
    @one_line_errors
    def list_datasets(url: UrlOpt = None, api_key: KeyOpt = None, as_json: JsonOpt = False) -> None:
        """List the team's datasets: layout, status, images per split, problems."""
        with client(url, api_key) as sdk:
            found = sdk.list_datasets()
        if as_json:
            output.emit_json({"items": [d.raw for d in found]})
            return
        if not found:
            output.console.print("no datasets yet: gkd data register NAME --layout L --uri URI", style="dim")
            return
        output.console.print(output.datasets_table(found))

    @data_app.command("delete")
    @one_line_errors
    def delete_dataset(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
    ) -> None:
        """Forget a dataset's registration and stop its validation; its files are not touched.

        Refused while a queued or running job or evaluation reads it.
        """
        with client(url, api_key) as sdk:
            sdk.delete_dataset(name)
        output.console.print(f"deleted dataset {escape(name)} (its files are untouched)")

    @data_app.command("show")
    @one_line_errors
    def show_dataset(
        name: Annotated[str, typer.Argument(help="Dataset name.")],
        url: UrlOpt = None,
        api_key: KeyOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Show a dataset and its validation report: images per split, label values, image sizes, problems."""
        with client(url, api_key) as sdk:
            ds = sdk.get_dataset(name)
        if as_json:
            output.emit_json(ds.raw)
            return
        _print_dataset(ds)

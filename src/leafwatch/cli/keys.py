"""`leafwatch keys`: clients' API keys, made, listed and revoked in the configured database."""

from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from leafwatch.config import Settings
from leafwatch.errors import ApiKeyNotFound

keys_app = typer.Typer(help="API keys of the clients (X-API-Key).", no_args_is_help=True)
console = Console()


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who the key is for, e.g. the app's name.")],
) -> None:
    """Make a key for client NAME and print it, once: only its hash is stored."""
    from leafwatch.cli.database import database_session
    from leafwatch.storage import keys

    try:
        with database_session(Settings()) as session:
            new = keys.create_key(session, name=name)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(f"API key {new.id} for [bold]{new.name}[/bold] (shown once, keep it secret):")
    # Plain stdout, not rich: nothing wraps or styles the key, so it can be piped into a file.
    typer.echo(new.key)


@keys_app.command("list")
def list_keys() -> None:
    """List the keys: id, client, prefix, when made, last used and revoked (never the key)."""
    from leafwatch.cli.database import database_session
    from leafwatch.storage import keys

    with database_session(Settings()) as session:
        rows = keys.list_keys(session)
    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.name,
            f"{row.prefix}…",
            _when(row.created_at),
            _when(row.last_used_at),
            _when(row.revoked_at),
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="The key's id, from `keys list`.")]) -> None:
    """Revoke key ID: services refuse it within LEAFWATCH_API_KEY_CACHE_SECONDS."""
    from leafwatch.cli.database import database_session
    from leafwatch.storage import keys

    try:
        with database_session(Settings()) as session:
            row = keys.revoke_key(session, key_id=key_id)
    except ApiKeyNotFound as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    console.print(f"API key {row.id} of [bold]{row.name}[/bold] revoked at {_when(row.revoked_at)}")


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else ""

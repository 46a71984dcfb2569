"""`leafwatch images`: the stored uploads, deleted by hand past the retention period."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console

from leafwatch.config import Settings

images_app = typer.Typer(help="Stored images (user data).", no_args_is_help=True)
console = Console()


@images_app.command("prune")
def prune(
    days: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Keep images uploaded within this many days [LEAFWATCH_IMAGE_RETENTION_DAYS].",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete the images nobody has uploaded for DAYS days; prediction rows keep their hash."""
    from leafwatch.storage.images import LocalImageStore

    settings = Settings()
    days = settings.image_retention_days if days is None else days
    if days <= 0:
        console.print(
            "[red]no retention period: pass --days or set LEAFWATCH_IMAGE_RETENTION_DAYS[/red]"
        )
        raise typer.Exit(2)
    store = LocalImageStore(settings.resolved_image_dir())
    deleted = store.prune(stored_before=datetime.now(UTC) - timedelta(days=days), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {deleted} images older than {days:g} days from {store.root}")

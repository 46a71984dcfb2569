"""`leafwatch images`: the stored uploads, deleted past the retention period or moved to S3."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
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
    from leafwatch.errors import ImageStoreUnavailable
    from leafwatch.storage.images import open_image_store

    settings = Settings()
    days = settings.image_retention_days if days is None else days
    if days <= 0:
        console.print(
            "[red]no retention period: pass --days or set LEAFWATCH_IMAGE_RETENTION_DAYS[/red]"
        )
        raise typer.Exit(2)
    where = settings.image_store_url or settings.resolved_image_dir()
    try:
        store = open_image_store(settings)
        cutoff = datetime.now(UTC) - timedelta(days=days)
        deleted = store.prune(stored_before=cutoff, dry_run=dry_run)
    except ImageStoreUnavailable as exc:
        console.print(exc.reason, style="red", markup=False)
        raise typer.Exit(1) from None
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {deleted} images older than {days:g} days from {where}")


@images_app.command("copy")
def copy(
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The bucket to copy to, s3://BUCKET/PREFIX [LEAFWATCH_IMAGE_STORE_URL].",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from", help="The local store to copy [LEAFWATCH_IMAGE_DIR].", show_default=False
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, max=64, help="Uploads at once.")] = 8,
) -> None:
    """Copy the local store's images to an S3 bucket under the same keys; safe to run again.

    Images already in the bucket with the same size are skipped, so a second run copies only
    what is new and an interrupted one resumes. Then set LEAFWATCH_IMAGE_STORE_URL.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from leafwatch.errors import ImageStoreUnavailable
    from leafwatch.storage.images import LocalImageStore
    from leafwatch.storage.s3images import S3Location, copy_images, count_images, open_s3_store

    settings = Settings()
    url = to or settings.image_store_url
    if not url:
        console.print("[red]no bucket: pass --to s3://BUCKET/PREFIX[/red]")
        raise typer.Exit(2)
    try:
        S3Location.parse(url)
    except ValueError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None
    local = LocalImageStore(source or settings.resolved_image_dir())
    try:
        target = open_s3_store(url, settings, connections=jobs)
        total = count_images(local)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"{local.root} -> {target}", total=total)
            counts = copy_images(local, target, jobs=jobs, done=lambda _key: progress.advance(task))
    except ImageStoreUnavailable as exc:
        console.print(exc.reason, style="red", markup=False)
        console.print("nothing copied is lost: run the same command again to go on")
        raise typer.Exit(1) from None
    console.print(
        f"copied {counts.copied}, already there {counts.present}, "
        f"gone meanwhile {counts.vanished} of {total} images from {local.root} to {target}"
    )

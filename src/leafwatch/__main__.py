"""`python -m leafwatch` is the `leafwatch` command."""

from leafwatch.cli import app

app()

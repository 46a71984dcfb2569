"""The `leafwatch` command line."""

from leafwatch.cli.main import app

__all__ = ["app"]

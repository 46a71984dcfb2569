"""The local stack's tests, run against the shipped deploy/ configuration."""

from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

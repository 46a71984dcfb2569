"""LeafWatch's one settings object, read from LEAFWATCH_* environment variables."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_NAME = "banana_sigatoka_detector"


class Settings(BaseSettings):
    """Everything LeafWatch can be told; the defaults run a self-contained service under ./var."""

    model_config = SettingsConfigDict(
        env_prefix="LEAFWATCH_", env_file=None, extra="ignore", frozen=True
    )

    var_dir: Path = Field(Path("var"), description="Where the embedded defaults keep their files.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default is a SQLite file under var_dir. "
        "postgresql+psycopg://user@host/db switches to PostgreSQL.",
    )
    migrate_on_start: bool | None = Field(
        None,
        description="Apply database migrations at start; default: yes for SQLite, no otherwise "
        "(run `leafwatch db upgrade`).",
    )
    image_dir: Path | None = Field(None, description="Image store; default var_dir/images.")
    model_dir: Path | None = Field(
        None, description="Local model registry; default var_dir/models."
    )
    model_name: str = Field(DEFAULT_MODEL_NAME, description="Registered model name to serve.")
    max_upload_bytes: Annotated[int, Field(gt=0)] = Field(
        10 * 1024 * 1024, description="Largest accepted upload, in bytes."
    )
    max_image_pixels: Annotated[int, Field(gt=0)] = Field(
        40_000_000, description="Largest accepted image, in pixels (decompression bombs)."
    )
    inference_threads: Annotated[int, Field(ge=0)] = Field(
        1, description="ONNX Runtime intra-op threads per process (0: let it choose)."
    )
    host: str = Field("127.0.0.1", description="Address `leafwatch serve` binds to.")
    port: Annotated[int, Field(gt=0, lt=65536)] = Field(8000, description="Port to serve on.")
    workers: Annotated[int, Field(ge=1)] = Field(1, description="Server processes.")
    metrics_dir: Path | None = Field(
        None,
        description="With several workers: where their metrics meet (PROMETHEUS_MULTIPROC_DIR); "
        "default var_dir/metrics, emptied at start.",
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token /metrics requires; unset: /metrics is open."
    )
    metrics_token_file: Path | None = Field(
        None, description="File holding the /metrics bearer token (instead of metrics_token)."
    )
    metrics_cache_seconds: Annotated[float, Field(ge=0)] = Field(
        30.0, description="How long figures computed from the database (accuracy) are reused."
    )
    error_rate_window_seconds: Annotated[float, Field(gt=0)] = Field(
        300.0, description="Window of api_error_rate, in seconds."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="Stdout format; auto: readable on a terminal, JSON lines otherwise."
    )
    log_file: str = Field(
        "logs/app.log", description="JSON-lines log file (rotated by size); empty: no file."
    )
    log_file_max_bytes: Annotated[int, Field(gt=0)] = Field(
        10 * 1024 * 1024, description="Size at which the log file is rotated."
    )
    log_file_backups: Annotated[int, Field(ge=0)] = Field(5, description="Rotated log files kept.")
    access_log: bool = Field(True, description="One log line per request.")
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint, e.g. http://jaeger:4318/v1/traces; "
        "unset: no export (ids still go to the logs).",
    )
    trace_sample_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        1.0, description="Share of new traces recorded (a parent's decision is followed)."
    )

    def resolved_database_url(self) -> str:
        """Return the database URL, the SQLite default included."""
        return self.database_url or f"sqlite:///{self.var_dir / 'leafwatch.db'}"

    def resolved_image_dir(self) -> Path:
        """Return the image store directory."""
        return self.image_dir or self.var_dir / "images"

    def resolved_model_dir(self) -> Path:
        """Return the local model registry directory."""
        return self.model_dir or self.var_dir / "models"

    def resolved_metrics_dir(self) -> Path:
        """Return the directory the workers' metrics files go to."""
        return self.metrics_dir or self.var_dir / "metrics"

    def resolved_metrics_token(self) -> str | None:
        """Return the /metrics bearer token, read from its file when one is given."""
        if self.metrics_token_file is not None:
            return self.metrics_token_file.read_text(encoding="utf-8").strip() or None
        return self.metrics_token.get_secret_value() if self.metrics_token else None

    def should_migrate_on_start(self) -> bool:
        """Whether to apply migrations when the app starts."""
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.resolved_database_url().startswith("sqlite")

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
    model_uri: str | None = Field(
        None,
        description=(
            "MLflow model to serve, models:/NAME@ALIAS (or models:/NAME/STAGE); "
            "unset: the local registry."
        ),
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking and registry URI; unset: MLflow's own default."
    )
    model_poll_seconds: Annotated[float, Field(ge=0)] = Field(
        30, description="How often a new production version is looked for; 0: never."
    )
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

    drift_interval_seconds: Annotated[float, Field(ge=0)] = Field(
        3600.0, description="How often the service runs drift detection; 0: never by itself."
    )
    drift_window_hours: Annotated[float, Field(gt=0)] = Field(
        24.0, description="The current window a drift run tests."
    )
    drift_min_samples: Annotated[int, Field(ge=10)] = Field(
        200, description="Fewer predictions than this in a window: 'not enough data', no score."
    )
    drift_alpha: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.05, description="Chance that a run with no drift flags anything (split over its tests)."
    )
    drift_reference: Literal["model", "live"] = Field(
        "model",
        description="model: the served version's held-out leaves; live: its first "
        "drift_live_reference_days of traffic.",
    )
    drift_live_reference_days: Annotated[float, Field(gt=0)] = Field(
        7.0, description="Length of the live reference, from the version's first prediction."
    )
    drift_persistence: Annotated[int, Field(ge=1)] = Field(
        3, description="Drifted runs in a row before retraining is recommended."
    )
    performance_interval_seconds: Annotated[float, Field(ge=0)] = Field(
        86400,
        description="How often the daily model_performance rows are recomputed; 0: never.",
    )
    retraining_webhook_url: SecretStr | None = Field(
        None, description="URL that gets a JSON POST when retraining is recommended."
    )
    retraining_webhook_url_file: Path | None = Field(
        None, description="File holding that URL (instead of retraining_webhook_url)."
    )
    faults_enabled: bool = Field(
        False, description="Turn on the fault switch, POST /api/v1/admin/faults (tests, demos)."
    )
    admin_token: SecretStr | None = Field(
        None, description="Bearer token of the admin endpoints; unset: they are refused."
    )
    admin_token_file: Path | None = Field(
        None, description="File holding the admin token (instead of admin_token)."
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
        return _secret(self.metrics_token, self.metrics_token_file)

    def resolved_admin_token(self) -> str | None:
        """Return the admin bearer token, read from its file when one is given."""
        return _secret(self.admin_token, self.admin_token_file)

    def resolved_retraining_webhook_url(self) -> str | None:
        """Return the retraining webhook URL, read from its file when one is given."""
        return _secret(self.retraining_webhook_url, self.retraining_webhook_url_file)

    def should_migrate_on_start(self) -> bool:
        """Whether to apply migrations when the app starts."""
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.resolved_database_url().startswith("sqlite")


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    # A file wins: it is how container platforms mount secrets, and it can be rotated in place.
    if file is not None:
        return file.read_text(encoding="utf-8").strip() or None
    return value.get_secret_value() if value else None

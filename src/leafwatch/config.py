"""LeafWatch's one settings object, read from LEAFWATCH_* environment variables."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_NAME = "banana_sigatoka_detector"
# Room in a request body for a form's fields other than the file: ids, place names, boundaries.
FORM_FIELDS_BYTES = 64 * 1024
# Ten a second, sustained, per client and worker: far above what a phone sends, low enough that
# one runaway client cannot take the service's whole capacity.
PRODUCTION_RATE_LIMIT_PER_MINUTE = 600.0


class Settings(BaseSettings):
    """Everything LeafWatch can be told; the defaults run a self-contained service under ./var."""

    model_config = SettingsConfigDict(
        env_prefix="LEAFWATCH_", env_file=None, extra="ignore", frozen=True
    )

    profile: Literal["embedded", "production"] = Field(
        "embedded",
        description="embedded: open to every caller, for one machine; production: API keys "
        "required and a rate limit, unless the settings below say otherwise.",
    )
    var_dir: Path = Field(Path("var"), description="Where the embedded defaults keep their files.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default is a SQLite file under var_dir. "
        "postgresql+psycopg://user@host/db switches to PostgreSQL.",
    )
    database_pool_size: Annotated[int, Field(ge=1)] = Field(
        5,
        description="PostgreSQL connections each process keeps open (SQLite: unused); every "
        "replica's workers together must stay under the server's max_connections.",
    )
    database_max_overflow: Annotated[int, Field(ge=0)] = Field(
        10, description="Connections a process may open beyond the pool under load, then close."
    )
    migrate_on_start: bool | None = Field(
        None,
        description="Apply database migrations at start; default: yes for SQLite, no otherwise "
        "(run `leafwatch db upgrade`).",
    )
    spool_enabled: bool = Field(
        True,
        description="While the database is away, keep accepted predictions and feedback in a "
        "local spool, on disk before the answer, and replay them when it answers again.",
    )
    spool_dir: Path | None = Field(None, description="Spool files; default var_dir/spool.")
    spool_retry_seconds: Annotated[float, Field(gt=0)] = Field(
        5.0,
        description="After a database failure, writes go straight to the spool for this long; "
        "the spool is replayed as often.",
    )
    image_dir: Path | None = Field(None, description="Image store; default var_dir/images.")
    image_store_url: str | None = Field(
        None,
        description="s3://BUCKET/PREFIX: keep images in an S3-compatible bucket (the [s3] extra; "
        "credentials from boto3's usual chain); unset: the local directory image_dir.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="Endpoint of an S3-compatible service (MinIO, Ceph, ...); unset: AWS S3.",
    )
    s3_region: str | None = Field(
        None, description="Region of the bucket; unset: boto3's own (AWS_REGION, ~/.aws/config)."
    )
    s3_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        5.0,
        description="Longest wait to connect to S3, and for each read of an answer: a slow S3 "
        "fails the request (503) instead of holding it.",
    )
    s3_max_attempts: Annotated[int, Field(ge=1)] = Field(
        3, description="Tries of one S3 call on transient errors, the first included, with backoff."
    )
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
    max_request_bytes: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="Largest request body, counted as it arrives (413 past it); default: "
        "max_upload_bytes plus 64 KiB for the form's other fields.",
    )
    request_timeout_seconds: Annotated[float, Field(ge=0)] = Field(
        60.0,
        description="Longest wait for the start of an answer: past it, 408 if the body is still "
        "arriving, else 503 (work already in a thread still finishes); 0: no limit.",
    )
    image_retention_days: Annotated[float, Field(ge=0)] = Field(
        0.0,
        description="Delete stored images not uploaded again for this many days (rows keep "
        "their hash); 0: keep them forever.",
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
    metrics_port: Annotated[int, Field(gt=0, lt=65536)] | None = Field(
        None,
        description="Serve /metrics on this port only (not on the API's port); with several "
        "workers, one of them holds it.",
    )
    metrics_host: str | None = Field(
        None, description="Address the metrics port binds to; default: the same as host."
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
    rollup_interval_seconds: Annotated[float, Field(ge=0)] = Field(
        600.0,
        description="How often the daily usage and quality rollups take in new and changed past "
        "days (the analytics read whole past days from them); 0: never.",
    )
    retraining_webhook_url: SecretStr | None = Field(
        None, description="URL that gets a JSON POST when retraining is recommended."
    )
    retraining_webhook_url_file: Path | None = Field(
        None, description="File holding that URL (instead of retraining_webhook_url)."
    )
    retraining_command: str | None = Field(
        None,
        description="Command run when retraining is recommended (split like a shell would, run "
        "without one), the event as JSON on its stdin.",
    )
    retraining_command_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        60.0,
        description="The retraining command is stopped after this long (the drift run waits "
        "for it: the command should start the retraining, not do it).",
    )
    auto_rollback: bool = Field(
        False,
        description="Let a firing critical alert on the production version, received at "
        "POST /api/v1/alerts, roll production back to the previous version (once per version).",
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
    require_api_key: bool | None = Field(
        None,
        description="Predict and feedback need an X-API-Key (`leafwatch keys create`); "
        "default: yes in the production profile, no in the embedded one.",
    )
    api_key_cache_seconds: Annotated[float, Field(ge=0)] = Field(
        30.0,
        description="How long a process trusts its copy of the API keys: a new or revoked key "
        "takes effect within this many seconds.",
    )
    rate_limit_per_minute: Annotated[float, Field(ge=0)] | None = Field(
        None,
        description="Predict and feedback requests per minute per client (API key, else IP) and "
        "per worker; 0: no limit; default: 600 in the production profile, none in the embedded.",
    )
    rate_limit_burst: Annotated[int, Field(ge=1)] = Field(
        60, description="Requests a client may send at once before the per-minute rate applies."
    )

    @field_validator("image_store_url")
    @classmethod
    def _image_store_url_names_a_bucket(cls, value: str | None) -> str | None:
        if not value:  # an empty variable (a ConfigMap's blank entry) means unset
            return None
        from leafwatch.storage.s3images import S3Location  # needs no boto3

        S3Location.parse(value)  # a ValueError naming the URL when it names no bucket
        return value

    @model_validator(mode="after")
    def _metrics_port_is_not_the_api_port(self) -> "Settings":
        if self.metrics_port is not None and self.metrics_port == self.port:
            raise ValueError(
                f"metrics_port {self.metrics_port} is the API's port: choose another, or unset it "
                "to serve /metrics on the API's port"
            )
        return self

    def resolved_database_url(self) -> str:
        """Return the database URL, the SQLite default included."""
        return self.database_url or f"sqlite:///{self.var_dir / 'leafwatch.db'}"

    def resolved_image_dir(self) -> Path:
        """Return the image store directory."""
        return self.image_dir or self.var_dir / "images"

    def resolved_max_request_bytes(self) -> int:
        """Return the request body limit: the upload limit plus room for the other form fields."""
        return self.max_request_bytes or self.max_upload_bytes + FORM_FIELDS_BYTES

    def resolved_spool_dir(self) -> Path:
        """Return the directory of the spool files."""
        return self.spool_dir or self.var_dir / "spool"

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

    def requires_api_key(self) -> bool:
        """Whether predict and feedback need an API key."""
        if self.require_api_key is not None:
            return self.require_api_key
        return self.profile == "production"

    def resolved_rate_limit_per_minute(self) -> float:
        """Requests per minute a client may make; 0 means no limit."""
        if self.rate_limit_per_minute is not None:
            return self.rate_limit_per_minute
        return PRODUCTION_RATE_LIMIT_PER_MINUTE if self.profile == "production" else 0.0

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

"""The metric names and label sets are the seed's, exactly: its dashboards and alerts use them."""

from prometheus_client import CollectorRegistry, generate_latest

from leafwatch.errors import INVALID_IMAGE_CODES
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.observe import metrics as names
from leafwatch.observe.metrics import LATENCY_BUCKETS, Metrics
from leafwatch.storage.queries import VersionAccuracy
from tests.scrape import samples, total

# From ../shared/seed/ENHANCEMENT_5_MONITORING.md, Phase 1, and the metrics issue.
SEED_INSTRUMENTS = {
    "api_requests": ("counter", {"method", "endpoint", "status"}),
    "api_request_latency_seconds": ("histogram", {"method", "endpoint"}),
    "api_active_requests": ("gauge", set()),
    "model_predictions": ("counter", {"model_version", "predicted_class"}),
    "model_inference_latency_seconds": ("histogram", {"model_version"}),
    "feedback_submissions": ("counter", {"is_correct", "feedback_source"}),
}


def instruments() -> dict[str, tuple[str, set[str]]]:
    metrics = Metrics(CollectorRegistry())
    return {
        family.name: (family.type, set(getattr(wrapper, "_labelnames", ())))
        for wrapper in vars(metrics).values()
        if hasattr(wrapper, "_labelnames")
        for family in wrapper.describe()
    }


def test_the_seeds_instruments_keep_their_names_types_and_labels() -> None:
    found = instruments()
    for name, expected in SEED_INSTRUMENTS.items():
        assert found[name] == expected, name


def test_user_id_is_never_a_label() -> None:
    for _kind, labels in instruments().values():
        assert not labels & {"user_id", "user", "prediction_id", "path"}


def test_latency_buckets_bracket_the_objectives() -> None:
    assert {0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5} <= set(LATENCY_BUCKETS)


def test_each_test_gets_a_fresh_registry() -> None:
    first, second = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    first.record_feedback(is_correct=True, feedback_source="web")
    text = generate_latest(second.registry).decode()
    assert total(text, "feedback_submissions_total") == 0


def test_rejection_reasons_and_feedback_series_exist_at_zero() -> None:
    text = generate_latest(Metrics(CollectorRegistry()).registry).decode()
    reasons = {s.labels["reason"] for s in samples(text) if s.name == "api_rejected_uploads_total"}
    assert reasons == set(INVALID_IMAGE_CODES)
    assert len([s for s in samples(text) if s.name == "feedback_submissions_total"]) == 6


def test_scheduled_runs_start_at_zero_and_count_by_task_and_status() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.prepare_scheduled_task("drift")
    text = generate_latest(metrics.registry).decode()
    runs = {
        (sample.labels["task"], sample.labels["status"], sample.value)
        for sample in samples(text)
        if sample.name == names.SCHEDULED_RUNS
    }
    assert runs == {("drift", status, 0.0) for status in names.SCHEDULED_STATUSES}
    metrics.record_scheduled_run("drift", "done")
    text = generate_latest(metrics.registry).decode()
    assert total(text, names.SCHEDULED_RUNS, task="drift", status="done") == 1
    assert total(text, names.SCHEDULED_RUNS, task="drift", status="failed") == 0


def test_a_prediction_counts_times_and_records_its_confidence() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.prepare_model("3")
    metrics.record_prediction(
        model_version="3", predicted_class="Stage2", confidence=0.93, inference_s=0.004
    )
    text = generate_latest(metrics.registry).decode()
    assert total(text, "model_predictions_total", model_version="3") == 1
    assert len([s for s in samples(text) if s.name == "model_predictions_total"]) == len(
        CLASS_NAMES
    )
    assert total(text, "model_inference_latency_seconds_sum", model_version="3") == 0.004
    confidence = {"model_version": "3", "predicted_class": "Stage2"}
    assert total(text, "model_prediction_confidence_bucket", le="0.9", **confidence) == 0
    assert total(text, "model_prediction_confidence_bucket", le="0.95", **confidence) == 1


def test_accuracy_is_published_only_with_verdicts_and_always_with_its_count() -> None:
    families = names.accuracy_families(
        [VersionAccuracy("2", "1h", 0, 0), VersionAccuracy("2", "24h", 40, 30)]
    )
    by_name = {family.name: family.samples for family in families}
    assert [(s.labels, s.value) for s in by_name[names.MODEL_ACCURACY]] == [
        ({"model_version": "2", "time_window": "24h"}, 0.75)
    ]
    assert {s.labels["time_window"]: s.value for s in by_name[names.MODEL_ACCURACY_FEEDBACK]} == {
        "1h": 0,
        "24h": 40,
    }


def test_model_info_is_absent_and_model_loaded_zero_without_a_model() -> None:
    info, loaded = names.model_families("banana_sigatoka_detector", None)
    assert info.samples == []
    assert loaded.samples[0].value == 0
    info, loaded = names.model_families("banana_sigatoka_detector", "4")
    assert info.samples[0].labels == {
        "model_name": "banana_sigatoka_detector",
        "model_version": "4",
    }
    assert loaded.samples[0].value == 1

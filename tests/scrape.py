"""Reading /metrics answers in tests, with prometheus_client's own parser."""

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels` (0 when there are none)."""
    return sum(
        sample.value
        for sample in samples(text)
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def series(text: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    """The distinct series (name and label set) of an exposition."""
    return {(sample.name, frozenset(sample.labels.items())) for sample in samples(text)}

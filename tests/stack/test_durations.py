"""Prometheus durations, and dividing the ones inside PromQL by a time factor."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leafwatch.stack import format_duration, parse_duration, scale_duration, scale_promql


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("2w1d", 15 * 86_400_000),
        ("1y", 365 * 86_400_000),
        ("250ms", 250),
        ("0", 0),
        ("0s", 0),
    ],
)
def test_parse_duration_reads_prometheus_units(text: str, milliseconds: int) -> None:
    assert parse_duration(text) == milliseconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "5m1h", "1.5h", "-5m"])
def test_parse_duration_refuses_what_prometheus_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (8_640_000, "2h24m"),
        (5_400_000, "1h30m"),
        (7 * 86_400_000, "1w"),
        (90_000, "1m30s"),
        (1_500, "1s500ms"),
        (0, "0s"),
    ],
)
def test_format_duration_uses_the_largest_whole_units(milliseconds: int, text: str) -> None:
    assert format_duration(milliseconds) == text


@given(st.integers(min_value=0, max_value=10 * 365 * 86_400_000))
def test_format_then_parse_gives_the_same_duration(milliseconds: int) -> None:
    assert parse_duration(format_duration(milliseconds)) == milliseconds


@pytest.mark.parametrize(
    ("text", "factor", "scaled"),
    [
        ("3d", 30, "2h24m"),
        ("5m", 30, "10s"),
        ("1h", 30, "2m"),
        ("6h", 30, "12m"),
        ("30m", 30, "1m"),
        ("1h", 1, "1h"),
        ("90m", 1, "1h30m"),
        ("5m", 7, "43s"),
    ],
)
def test_scale_duration_divides_and_rounds_to_seconds(
    text: str, factor: float, scaled: str
) -> None:
    assert scale_duration(text, factor) == scaled


def test_scale_duration_never_goes_below_one_second_but_keeps_zero() -> None:
    assert scale_duration("15s", 60) == "1s"
    assert scale_duration("500ms", 2) == "1s"
    assert scale_duration("0s", 60) == "0s"


def test_scale_duration_refuses_a_factor_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        scale_duration("5m", 0)


@given(st.integers(min_value=1, max_value=400 * 86_400), st.floats(min_value=1, max_value=1000))
def test_scaled_durations_are_the_quotient_in_whole_seconds(seconds: int, factor: float) -> None:
    scaled = parse_duration(scale_duration(format_duration(seconds * 1000), factor))
    assert scaled == max(1, round(seconds / factor)) * 1000


@pytest.mark.parametrize(
    ("expression", "scaled"),
    [
        ("rate(api_requests_total[5m])", "rate(api_requests_total[10s])"),
        ("max_over_time(job:x:rate5m[1h:5m])", "max_over_time(job:x:rate5m[2m:10s])"),
        ("max_over_time(x[3d:])", "max_over_time(x[2h24m:])"),
        ("avg_over_time(x[ 1h ])", "avg_over_time(x[ 2m ])"),
        ("x offset 1d", "x offset 48m"),
        ("rate(x[5m] offset -1h)", "rate(x[10s] offset -2m)"),
        ("sum(rate(a[1h])) / sum(rate(a[5m]))", "sum(rate(a[2m])) / sum(rate(a[10s]))"),
    ],
)
def test_scale_promql_divides_ranges_subqueries_and_offsets(expression: str, scaled: str) -> None:
    assert scale_promql(expression, 30) == scaled


@pytest.mark.parametrize(
    ("expression", "scaled"),
    [
        # A label value that looks like a range is text, not a duration.
        ('rate(x{path=~"/api/[5m]"}[5m])', 'rate(x{path=~"/api/[5m]"}[10s])'),
        (
            "up{job='leafwatch', note='offset 5m'} == 0",
            "up{job='leafwatch', note='offset 5m'} == 0",
        ),
        # Numbers and rule names with a duration in them are not durations either.
        (
            "histogram_quantile(0.95, sum by (job, le) (job:latency:rate5m)) > 1",
            "histogram_quantile(0.95, sum by (job, le) (job:latency:rate5m)) > 1",
        ),
        (
            "predict_linear(node_filesystem_avail_bytes{fstype!~`tmp[5m]`}[6h], 4 * 3600) < 0",
            "predict_linear(node_filesystem_avail_bytes{fstype!~`tmp[5m]`}[12m], 4 * 3600) < 0",
        ),
    ],
)
def test_scale_promql_leaves_strings_numbers_and_names_alone(expression: str, scaled: str) -> None:
    assert scale_promql(expression, 30) == scaled

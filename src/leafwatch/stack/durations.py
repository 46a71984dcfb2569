"""Prometheus durations (`5m`, `2h24m`) and dividing the ones inside PromQL by a time factor."""

import re

# Prometheus's units, largest first, in milliseconds (a year is 365 days, as in Prometheus).
_UNITS = (
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
)
# Each unit at most once and in this order, as Prometheus's own parser demands.
_DURATION = re.compile("".join(rf"(?:(\d+){unit})?" for unit, _ in _UNITS))
_TOKEN = r"(?:\d+(?:ms|[smhdwy]))+"
# String literals come first so that a `[5m]` inside a label value is left alone.
_PROMQL = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)"""
    rf"|(?P<open>\[\s*)(?P<range>{_TOKEN})(?P<colon>\s*:\s*)?(?P<step>{_TOKEN})?"
    rf"|(?P<offset>\boffset\s+-?)(?P<shift>{_TOKEN})"
)


def parse_duration(text: str) -> int:
    """Milliseconds in a Prometheus duration such as `1h30m`; ValueError if it is not one."""
    text = text.strip()
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(
        int(value) * size for value, (_, size) in zip(match.groups(), _UNITS, strict=True) if value
    )


def format_duration(milliseconds: int) -> str:
    """A duration in the largest whole units Prometheus accepts: 8640000 -> `2h24m`."""
    if milliseconds < 0:
        raise ValueError(f"negative duration: {milliseconds} ms")
    if milliseconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, milliseconds = divmod(milliseconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def scale_duration(text: str, factor: float) -> str:
    """A duration divided by `factor`, in whole seconds and at least 1s (0 stays 0)."""
    if factor <= 0:
        raise ValueError(f"time factor must be positive, not {factor}")
    milliseconds = parse_duration(text)
    if milliseconds == 0:
        return "0s"
    seconds = max(1, round(milliseconds / factor / 1000))
    return format_duration(seconds * 1000)


def scale_promql(expression: str, factor: float) -> str:
    """An expression with every range, subquery and offset duration divided by `factor`."""

    def replace(match: re.Match[str]) -> str:
        if match["string"] is not None:
            return match[0]
        if match["shift"] is not None:
            return match["offset"] + scale_duration(match["shift"], factor)
        window = scale_duration(match["range"], factor)
        step = scale_duration(match["step"], factor) if match["step"] else ""
        return match["open"] + window + (match["colon"] or "") + step

    return _PROMQL.sub(replace, expression)

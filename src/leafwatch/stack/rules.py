"""Time-scaled copies of the shipped rule files, so tests and demos see alerts in seconds."""

import copy
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from leafwatch.stack.durations import scale_duration, scale_promql
from leafwatch.stack.yamlio import dump_yaml, load_yaml

# Rule keys that hold a duration; `expr` is PromQL and scaled inside.
_RULE_DURATIONS = ("for", "keep_firing_for")


def scale_rule_groups(document: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """A rule file whose `for:`, group `interval:` and PromQL durations are divided by `factor`."""
    scaled = copy.deepcopy(dict(document))
    for group in scaled.get("groups") or []:
        if "interval" in group:
            group["interval"] = scale_duration(str(group["interval"]), factor)
        for rule in group.get("rules") or []:
            if isinstance(rule.get("expr"), str):
                rule["expr"] = scale_promql(rule["expr"], factor)
            for key in _RULE_DURATIONS:
                if key in rule:
                    rule[key] = scale_duration(str(rule[key]), factor)
    return scaled


def write_scaled_rules(files: Sequence[Path], factor: float, directory: Path) -> list[Path]:
    """Write a scaled copy of each rule file into `directory` (emptied first); return the copies."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    written = []
    for index, source in enumerate(files):
        # The index keeps two sources with one file name apart, and the order stable.
        target = directory / f"{index:02d}-{source.name}"
        header = f"# {source} with every duration divided by {factor:g}; generated, do not edit.\n"
        target.write_text(header + dump_yaml(scale_rule_groups(load_yaml(source), factor)))
        written.append(target)
    return written

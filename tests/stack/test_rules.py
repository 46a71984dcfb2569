"""Time-scaled rule files: every duration divided, everything else as shipped, still valid."""

import copy
import subprocess
from pathlib import Path

import yaml

from leafwatch.stack import load_yaml, scale_rule_groups, shipped_rule_files, write_scaled_rules
from tests.stack import DEPLOY

GROUPS = {
    "groups": [
        {
            "name": "slo-burn",
            "interval": "30s",
            "rules": [
                {
                    "record": "job:slo_errors:ratio_rate3d",
                    "expr": "sum by (job) (rate(api_requests_total{status=~'5..'}[3d]))\n"
                    "/ sum by (job) (rate(api_requests_total[3d]))",
                },
                {
                    "alert": "AvailabilityBudgetBurnSlow",
                    "expr": "job:slo_errors:ratio_rate3d > 0.001"
                    " and max_over_time(job:slo_errors:ratio_rate6h[1h:5m]) > 0.001",
                    "for": "1h",
                    "keep_firing_for": "10m",
                    "labels": {"severity": "warning", "team": "ml-platform"},
                    "annotations": {
                        "summary": "Error budget burning over [3d]",
                        "description": "{{ $value | humanizePercentage }} for 1h",
                        "runbook_url": "https://example.org/runbooks/AvailabilityBudgetBurnSlow.md",
                    },
                },
            ],
        },
        {"name": "no-interval", "rules": [{"alert": "Always", "expr": "vector(1)"}]},
    ]
}


def test_scaling_divides_for_interval_and_promql_durations() -> None:
    scaled = scale_rule_groups(GROUPS, 30)
    group = scaled["groups"][0]
    record, alert = group["rules"]
    assert group["interval"] == "1s"
    assert record["expr"] == (
        "sum by (job) (rate(api_requests_total{status=~'5..'}[2h24m]))\n"
        "/ sum by (job) (rate(api_requests_total[2h24m]))"
    )
    assert alert["expr"] == (
        "job:slo_errors:ratio_rate3d > 0.001"
        " and max_over_time(job:slo_errors:ratio_rate6h[2m:10s]) > 0.001"
    )
    assert alert["for"] == "2m"
    assert alert["keep_firing_for"] == "20s"


def test_scaling_leaves_names_labels_annotations_and_absent_keys_alone() -> None:
    original = copy.deepcopy(GROUPS)
    scaled = scale_rule_groups(GROUPS, 30)
    assert original == GROUPS, "the input document must not change"
    record, alert = scaled["groups"][0]["rules"]
    assert record["record"] == "job:slo_errors:ratio_rate3d"
    assert alert["labels"] == original["groups"][0]["rules"][1]["labels"]
    assert alert["annotations"] == original["groups"][0]["rules"][1]["annotations"]
    assert scaled["groups"][1] == original["groups"][1]


def test_written_copies_keep_the_order_and_promtool_accepts_them(tmp_path: Path) -> None:
    first = tmp_path / "a" / "rules.yml"
    second = tmp_path / "b" / "rules.yml"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(GROUPS))
    out = tmp_path / "scaled"
    (out / "stale.yml").parent.mkdir()
    (out / "stale.yml").write_text("left from an earlier run")
    written = write_scaled_rules([first, second], 30, out)
    assert [path.name for path in written] == ["00-rules.yml", "01-rules.yml"]
    assert sorted(out.iterdir()) == written, "earlier copies are removed"
    assert load_yaml(written[1]) == scale_rule_groups(GROUPS, 30)
    check = subprocess.run(
        ["promtool", "check", "rules", *map(str, written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_scaled_shipped_rules_pass_promtool(tmp_path: Path) -> None:
    prometheus = DEPLOY / "prometheus" / "prometheus.yml"
    sources = shipped_rule_files(load_yaml(prometheus), prometheus.parent)
    assert sources, f"{prometheus} names no rule files"
    written = write_scaled_rules(sources, 60, tmp_path / "scaled")
    check = subprocess.run(
        ["promtool", "check", "rules", *map(str, written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for source, copy_ in zip(sources, written, strict=True):
        original = load_yaml(source)
        scaled = load_yaml(copy_)
        # Same groups and rules, in the same order, under the same names.
        assert [g["name"] for g in scaled["groups"]] == [g["name"] for g in original["groups"]]
        for before, after in zip(original["groups"], scaled["groups"], strict=True):
            names = [rule.get("alert") or rule.get("record") for rule in before["rules"]]
            assert [rule.get("alert") or rule.get("record") for rule in after["rules"]] == names

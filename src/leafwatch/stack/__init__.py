"""A local Prometheus and Alertmanager, configured from the shipped deploy/ files."""

from leafwatch.stack.config import StackError, StackFiles, StackOptions, write_stack_files
from leafwatch.stack.durations import format_duration, parse_duration, scale_duration, scale_promql
from leafwatch.stack.processes import LocalStack, find_binary, free_port
from leafwatch.stack.render import (
    AlertmanagerOverrides,
    render_alertmanager_config,
    render_prometheus_config,
    secret_files,
    set_dotted,
    shipped_rule_files,
)
from leafwatch.stack.rules import scale_rule_groups, write_scaled_rules
from leafwatch.stack.yamlio import dump_yaml, load_yaml

__all__ = [
    "AlertmanagerOverrides",
    "LocalStack",
    "StackError",
    "StackFiles",
    "StackOptions",
    "dump_yaml",
    "find_binary",
    "format_duration",
    "free_port",
    "load_yaml",
    "parse_duration",
    "render_alertmanager_config",
    "render_prometheus_config",
    "scale_duration",
    "scale_promql",
    "scale_rule_groups",
    "secret_files",
    "set_dotted",
    "shipped_rule_files",
    "write_scaled_rules",
    "write_stack_files",
]

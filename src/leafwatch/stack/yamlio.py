"""Reading and writing the YAML configuration files, readable after a round trip."""

from pathlib import Path
from typing import Any

# PyYAML comes with uvicorn[standard]; its type stubs (types-PyYAML) are not installed everywhere.
import yaml  # type: ignore[import-untyped, unused-ignore]


class _Dumper(yaml.SafeDumper):  # type: ignore[misc, unused-ignore]
    """A safe dumper that writes multi-line strings (PromQL, templates) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        """Write shared values out in full: `&id001` anchors would only puzzle a reader."""
        return True


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def load_yaml(path: Path) -> Any:
    """The document in a YAML file (an empty file is an empty mapping)."""
    return yaml.safe_load(path.read_text()) or {}


def dump_yaml(document: Any) -> str:
    """YAML text of a document, keys in their given order."""
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return text

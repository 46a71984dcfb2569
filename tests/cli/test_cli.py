"""The `leafwatch` command line: help everywhere, database and model management."""

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from leafwatch.cli import app
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.storage import db

runner = CliRunner()


def all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(command: object, prefix: list[str]) -> None:
        # typer carries its own copy of click, so look for subcommands rather than a class
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "leafwatch")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_commands_the_docs_name_exist() -> None:
    paths = all_command_paths()
    groups = {path[0] for path in paths if len(path) == 2}
    names = {" ".join(path) for path in paths}
    root = Path(__file__).resolve().parents[2]
    named = set()
    for doc in [root / "README.md", *(root / "docs").glob("*.md")]:
        for first, second in re.findall(
            r"\bleafwatch (?!leafwatch\b)([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", doc.read_text()
        ):
            # A group's next word is its subcommand; after a command it is prose or an argument.
            named.add(f"{first} {second}" if first in groups and second else first)
    assert named, "no command found in the docs"
    assert {"serve", "db upgrade", "model rollback", "keys create"} <= named
    assert named <= names, f"named in the docs but not a command: {sorted(named - names)}"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEAFWATCH_VAR_DIR", str(tmp_path / "cli-var"))
    return tmp_path / "cli-var"


def test_db_upgrade_migrates_the_configured_database(env: Path) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    head = db.head_revision()
    assert head in result.output
    assert (env / "leafwatch.db").is_file()
    assert head in runner.invoke(app, ["db", "current"]).output


def test_model_list_promote_and_rollback(env: Path) -> None:
    listing = runner.invoke(app, ["model", "list"])
    assert listing.exit_code == 0, listing.output
    assert "1" in listing.output
    models = env / "models" / "banana_sigatoka_detector" / "versions" / "1"
    from leafwatch.model.registry import LocalModelRegistry

    registry = LocalModelRegistry(env / "models", "banana_sigatoka_detector")
    second = registry.register(models / "model.onnx", {"input_size": 128})
    promoted = runner.invoke(app, ["model", "promote", second.version])
    assert promoted.exit_code == 0, promoted.output
    assert registry.production().version == "2"
    rolled = runner.invoke(app, ["model", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert "from version 2 to" in rolled.output
    assert registry.production().version == "1"
    again = runner.invoke(app, ["model", "rollback"])
    assert again.exit_code == 1
    assert "no earlier production version" in again.output
    unknown = runner.invoke(app, ["model", "promote", "42"])
    assert unknown.exit_code == 1
    assert "no version '42'" in unknown.output


def test_generate_writes_a_folder_per_class(tmp_path: Path) -> None:
    out = tmp_path / "leaves"
    result = runner.invoke(
        app,
        [
            "generate",
            "--out",
            str(out),
            "--per-class",
            "2",
            "--seed",
            "3",
            "--resolution",
            "200x100",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(out.rglob("*.jpg"))
    assert len(files) == 14
    assert {path.parent.name for path in files} == set(CLASS_NAMES)


def test_generate_refuses_bad_options(tmp_path: Path) -> None:
    bad_size = runner.invoke(app, ["generate", "--out", str(tmp_path), "--resolution", "big"])
    assert bad_size.exit_code == 2
    assert "WIDTHxHEIGHT" in bad_size.output
    bad_weights = runner.invoke(app, ["generate", "--out", str(tmp_path), "--class-weights", "1,2"])
    assert bad_weights.exit_code == 2


@pytest.mark.train
def test_train_registers_and_promotes_a_new_version(env: Path) -> None:
    pytest.importorskip("torch")
    result = runner.invoke(
        app,
        ["train", "--per-class", "6", "--epochs", "1", "--input-size", "48", "--promote"],
    )
    assert result.exit_code == 0, result.output
    assert "registered banana_sigatoka_detector version 2" in result.output
    from leafwatch.model.registry import LocalModelRegistry

    registry = LocalModelRegistry(env / "models", "banana_sigatoka_detector")
    production = registry.production()
    assert production.version == "2"
    assert production.card["input_size"] == 48
    assert production.model_path.is_file()

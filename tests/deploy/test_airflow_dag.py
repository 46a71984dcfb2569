"""The Airflow DAG's task code against a real LeafWatch (Airflow itself is not installed here)."""

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

from leafwatch.app import create_app
from leafwatch.config import Settings
from tests.servers import uvicorn_thread

DAG_FILE = Path(__file__).resolve().parents[2] / "deploy" / "airflow" / "drift_monitoring.py"


def load_dag_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("drift_monitoring", DAG_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dag_task_runs_drift_through_the_api(tmp_path: Path) -> None:
    module = load_dag_module()
    settings = Settings(var_dir=tmp_path / "var", admin_token="dag-token")
    with uvicorn_thread(create_app(settings)) as url:
        report = module.run_drift(url, "dag-token")
    assert report["status"] == "not_enough_data"
    assert module.retraining_recommended(report) is False
    assert module.retraining_recommended({"retraining_recommended": True}) is True


def test_the_dag_is_hourly_without_catchup_and_retrains_only_on_recommendation() -> None:
    tree = ast.parse(DAG_FILE.read_text())
    decorator = next(
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dag"
    )
    options = {keyword.arg: keyword.value for keyword in decorator.keywords}
    assert ast.literal_eval(options["schedule"]) == "@hourly"
    assert ast.literal_eval(options["catchup"]) is False
    assert "needs_retraining(drift()) >> retrain" in DAG_FILE.read_text()

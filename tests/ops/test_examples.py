"""The scheduling examples under examples/: parsed, their commands checked against the CLI, and
the Python ones imported where their library installs here.

Dagster (`dagster-dlt`, in the dev extra) is imported for real. Airflow is not installed: it
pulls in a few hundred packages with pins of its own (its SQLAlchemy and pendulum ranges clash
with the rest of the dev environment) and takes minutes, so its DAG is checked statically: it
parses, it imports dlt's helper, and every keyword it passes exists in the helper's signature
(read from dlt's installed source). If Airflow is importable, the DAG is imported too.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shlex

import yaml

from pipelines.cli import build_parser
from tests.support import ROOT

EXAMPLES = os.path.join(ROOT, "examples")


def cli_args(command: str) -> list:
    """The arguments of the `registry-etl` call inside a shell command line."""
    words = shlex.split(command.split("&&")[-1].split(">>")[0])
    index = next(i for i, w in enumerate(words) if w.endswith("registry-etl"))
    return words[index + 1:]


def valid_cron(expression: str) -> bool:
    fields = expression.split()
    return len(fields) == 5 and all(f == "*" or f.replace("/", "").replace(",", "").replace("-", "").isdigit() or f.startswith("*/") for f in fields)


def test_crontab_lines_are_valid_and_call_the_cli():
    lines = [line for line in open(os.path.join(EXAMPLES, "crontab")) if line.strip() and not line.startswith("#")]
    jobs = [line for line in lines if "=" not in line.split()[0]]
    assert jobs
    for job in jobs:
        fields = job.split(None, 5)
        assert valid_cron(" ".join(fields[:5])), job
        args = build_parser().parse_args(cli_args(fields[5]))
        assert args.command == "load" and args.log_format == "json"


def test_github_actions_workflow_parses_and_calls_the_cli():
    workflow = yaml.safe_load(open(os.path.join(EXAMPLES, "github-actions.yml")))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert all(valid_cron(s["cron"]) for s in triggers["schedule"])
    assert workflow["concurrency"]["cancel-in-progress"] is False
    commands = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "registry-etl" in step.get("run", "")]
    parsed = [build_parser().parse_args(cli_args(c)) for c in commands]
    assert [p.command for p in parsed] == ["load", "status"]
    assert parsed[0].destination == "postgres"


def _keywords(tree: ast.AST, name: str) -> set:
    return {
        kw.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)
        for kw in node.keywords
    }


def _signature(source: ast.AST, cls: str, method: str) -> set:
    for node in ast.walk(source):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == method:
                    args = item.args
                    return {a.arg for a in args.args + args.kwonlyargs}, args.kwarg is not None
    raise AssertionError(f"{cls}.{method} not found")


def test_airflow_dag_uses_dlt_airflow_helper_as_it_is_defined():
    path = os.path.join(EXAMPLES, "airflow_dag.py")
    tree = ast.parse(open(path).read(), path)
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert ("dlt.helpers.airflow_helper", "PipelineTasksGroup") in imports
    assert ("sources.ecr", "ecr_source") in imports
    helper_path = os.path.join(os.path.dirname(importlib.util.find_spec("dlt").origin), "helpers", "airflow_helper.py")
    helper = ast.parse(open(helper_path).read())
    init_args, _ = _signature(helper, "PipelineTasksGroup", "__init__")
    assert _keywords(tree, "PipelineTasksGroup") <= init_args
    run_args, run_kwargs = _signature(helper, "PipelineTasksGroup", "add_run")
    used = _keywords(tree, "add_run")
    assert "decompose" in used and used & run_args == {"decompose"}  # the rest go to the Airflow task
    assert run_kwargs
    dag_kwargs = _keywords(tree, "dag")
    assert {"schedule", "max_active_runs", "catchup"} <= dag_kwargs
    if importlib.util.find_spec("airflow") is not None:  # pragma: no cover - not installed here
        spec = importlib.util.spec_from_file_location("airflow_dag_example", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_dagster_definitions_import_with_the_ecr_assets(monkeypatch):
    monkeypatch.setenv("SOURCES__ECR__REGIONS", '["us-east-1"]')
    spec = importlib.util.spec_from_file_location("dagster_assets_example", os.path.join(EXAMPLES, "dagster_assets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert [k.to_user_string() for k in module.registry_ecr_assets.keys] == ["dlt_ecr_images"]
    job = module.defs.resolve_job_def("registry_etl_load")
    assert job.tags["dagster/max_concurrent_runs"] == "1"
    schedules = list(module.defs.schedules)
    assert [s.cron_schedule for s in schedules] == ["7 * * * *"]

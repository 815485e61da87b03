"""Airflow: the registry inventory every hour, with dlt's Airflow helper.

Put this file and the project's `sources/` package in the DAGs folder (or install the project
into Airflow's environment), and the dlt config under `dags/.dlt/` (`config.toml`,
`secrets.toml`) or as Airflow variables, as dlt's helper expects:

    [sources.ecr]
    regions = ["us-east-1", "eu-west-1"]
    [destination.postgres]
    credentials = "postgresql://loader:***@warehouse:5432/analytics"

The helper runs the source as one task (`decompose="none"`: the `images` transformer and the
tag scope markers must be extracted together). `max_active_runs=1` is the scheduler's form of
the CLI's lock. To get the CLI's run log (`load_runs`), exit codes and lock instead, run
`registry-etl load ecr --destination postgres` from a BashOperator.
"""

from __future__ import annotations

from datetime import timedelta

import dlt
import pendulum
from airflow.decorators import dag
from dlt.helpers.airflow_helper import PipelineTasksGroup

default_task_args = {
    "owner": "platform",
    "retries": 0,  # the sources retry throttling and 5xx themselves
    "execution_timeout": timedelta(hours=2),
}


@dag(
    schedule="7 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_task_args,
    tags=["registry-etl"],
)
def registry_etl():
    tasks = PipelineTasksGroup("registry_etl", use_data_folder=False, wipe_local_data=True)

    from sources.ecr import ecr_source

    pipeline = dlt.pipeline(
        pipeline_name="registry_etl",
        dataset_name="registry",
        destination="postgres",
    )
    tasks.add_run(pipeline, ecr_source(), decompose="none", trigger_rule="all_done", retries=0, provide_context=True)


registry_etl()

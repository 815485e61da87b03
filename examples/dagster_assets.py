"""Dagster: the ECR inventory as software-defined assets, with dagster's dlt integration.

    pip install dagster dagster-dlt
    SOURCES__ECR__REGIONS='["us-east-1"]' dagster dev -f examples/dagster_assets.py

Configuration is dlt's (`.dlt/config.toml`, `.dlt/secrets.toml`, environment), read when this
module is imported. The schedule runs hourly; `max_concurrent_runs` on the job's tag keeps two
loads of the dataset apart (the CLI's lock only covers one machine).
"""

import os

from dagster import AssetExecutionContext, Definitions, ScheduleDefinition, define_asset_job
from dagster_dlt import DagsterDltResource, dlt_assets

from pipelines.load import make_pipeline
from sources.ecr import ecr_source

DESTINATION = os.environ.get("DESTINATION_TYPE", "duckdb")


@dlt_assets(
    dlt_source=ecr_source(),
    # make_pipeline: for DuckDB, the destination whose merge can spill under the memory limit
    dlt_pipeline=make_pipeline(destination=DESTINATION),
    name="registry_ecr",
    group_name="registry",
)
def registry_ecr_assets(context: AssetExecutionContext, dlt: DagsterDltResource):
    yield from dlt.run(context=context)


registry_job = define_asset_job(
    "registry_etl_load",
    selection=[registry_ecr_assets],
    tags={"dagster/max_concurrent_runs": "1"},
)

defs = Definitions(
    assets=[registry_ecr_assets],
    resources={"dlt": DagsterDltResource()},
    jobs=[registry_job],
    schedules=[ScheduleDefinition(job=registry_job, cron_schedule="7 * * * *")],
)

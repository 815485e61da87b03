"""The sources under test, one table entry each: how to start its emulator over an inventory,
which settings keep its retries fast, which faults to inject, and its credential settings.

A source joins every reliability test by adding one `SourceCase` to `CASES`; the tests iterate
over the entries whose provider is in the catalog (sources land on main one by one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from emulators.base import Emulator, Faults
from emulators.inventory import Inventory
from pipelines.catalog import PROVIDERS

# at least one call in five fails transiently, every kind of fault the emulators know
FAULTS = dict(throttle_every=5, error_every=7, drop_every=11, truncate_every=13)


@dataclass(frozen=True)
class SourceCase:
    provider: str
    registries: Tuple[str, ...]  # inventory registry names as the emulator expects them
    detail_operation: str  # an emulator operation called several times mid-extract (per-image details)
    # env settings that keep a test's retries fast and plentiful (dlt's REST client)
    fast_retries: Dict[str, str] = field(default_factory=dict)
    # source options for fault runs (botocore attempts for ECR)
    fault_options: Dict[str, Any] = field(default_factory=dict)
    # env names of every credential setting of the source (for the secrets test)
    secret_settings: Tuple[str, ...] = ()
    # the emulator's own test credentials replaced by recognisable ones: env -> value, and how
    # to make the emulator accept them (called with the started emulator and that env)
    use_test_secrets: Optional[Callable[[Emulator, Dict[str, str]], Dict[str, str]]] = None

    def inventory(self, seed: int = 1, repositories: int = 4, images: int = 40, **kwargs: Any) -> Inventory:
        return Inventory(seed=seed, registries=self.registries, repositories=repositories, images=images, **kwargs)

    def start(self, inventory: Inventory, faults: Optional[Faults] = None) -> Tuple[Emulator, Dict[str, str]]:
        """Start the source's emulator; returns it and the env that points the source at it."""
        emulator, env = PROVIDERS[self.provider].start_demo_emulator(inventory=inventory, faults=faults)
        env = dict(env)
        env.update(self.fast_retries)
        return emulator, env


REST_FAST_RETRIES = {
    "RUNTIME__REQUEST_MAX_ATTEMPTS": "12",
    "RUNTIME__REQUEST_BACKOFF_FACTOR": "0.001",
    "RUNTIME__REQUEST_MAX_RETRY_DELAY": "0.05",
    "RUNTIME__REQUEST_TIMEOUT": "10",
}


def _ecr_test_secrets(emulator: Emulator, env: Dict[str, str]) -> Dict[str, str]:
    key, secret, token = "AKIARELIABILITY00042", "rel-test-secret-Z9q8w7e6r5t4y3", "rel-test-session-token-Q1w2E3r4"
    emulator.credentials = {key: secret}  # type: ignore[attr-defined]
    return {**env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": token}


CASES: List[SourceCase] = [
    SourceCase(
        "ecr",
        registries=("us-east-1", "eu-west-1"),
        detail_operation="DescribeImages",
        fast_retries={"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "", "AWS_CONFIG_FILE": os.devnull,
                      "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"},
        fault_options={"max_attempts": 12},
        secret_settings=("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
        use_test_secrets=_ecr_test_secrets,
    ),
]


def available() -> List[SourceCase]:
    """The cases whose source has landed in the catalog."""
    return [case for case in CASES if case.provider in PROVIDERS]


def case_ids(cases: List[SourceCase]) -> List[str]:
    return [case.provider for case in cases]

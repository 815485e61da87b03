from __future__ import annotations

from typing import Iterator

import pytest

from emulators.base import Faults
from emulators.ecr import EcrEmulator, demo_env
from emulators.inventory import Inventory
from pipelines.load import environment



@pytest.fixture
def ecr_inventory() -> Inventory:
    return Inventory(seed=21, registries=("us-east-1", "eu-west-1"), repositories=4, images=30)


@pytest.fixture
def ecr(ecr_inventory) -> Iterator[EcrEmulator]:
    """The ECR emulator over a small inventory, with the source pointed at it."""
    emulator = EcrEmulator(ecr_inventory).start()
    env = demo_env(emulator)
    with environment({**env, "AWS_PROFILE": None, "AWS_SESSION_TOKEN": None}):
        yield emulator
    emulator.stop()


@pytest.fixture
def ecr_env_throttled() -> Iterator[EcrEmulator]:
    """A small ECR emulator that throttles every 4th call (botocore retries those)."""
    emulator = EcrEmulator(Inventory(seed=4, registries=("us-east-1",), repositories=2, images=6), Faults(throttle_every=4)).start()
    with environment({**demo_env(emulator), "AWS_PROFILE": None, "AWS_SESSION_TOKEN": None}):
        yield emulator
    emulator.stop()

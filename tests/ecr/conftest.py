from __future__ import annotations

from typing import Iterator

import pytest

from emulators.base import Faults
from emulators.ecr import DEFAULT_ACCOUNT, EcrEmulator, demo_env
from emulators.inventory import Inventory
from pipelines.load import environment


def ecr_registry(region: str) -> str:
    return f"{DEFAULT_ACCOUNT}.dkr.ecr.{region}.amazonaws.com"


@pytest.fixture
def ecr_env() -> Iterator[callable]:
    """Start an ECR emulator over an inventory and point the source (and boto3) at it."""
    started = []
    stack = []

    def start(inventory: Inventory, faults: Faults = None, **kwargs) -> EcrEmulator:
        emulator = EcrEmulator(inventory, faults, **kwargs).start()
        started.append(emulator)
        ctx = environment({**demo_env(emulator), "AWS_PROFILE": None, "AWS_SESSION_TOKEN": None})
        ctx.__enter__()
        stack.append(ctx)
        return emulator

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
    for emulator in started:
        emulator.stop()

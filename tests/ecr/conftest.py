from __future__ import annotations

import os
from typing import Dict, Iterator

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
        env: Dict[str, str] = demo_env(emulator)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.setdefault(key, "")
        ctx = environment(env)
        ctx.__enter__()
        stack.append(ctx)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        return emulator

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)
    for emulator in started:
        emulator.stop()

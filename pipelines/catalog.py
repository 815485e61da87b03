"""Every registry the CLI knows: its dlt source, its emulator and its demo setup.

Adding a registry costs one folder under `sources/`, one under `emulators/`, and one entry here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Dict


@dataclass(frozen=True)
class Provider:
    name: str
    title: str
    source: str  # "module:function" of the dlt source; called with config from dlt's providers
    emulator: str  # "module:function" -> (emulator started on loopback, env vars for the source)

    def make_source(self, **kwargs: Any) -> Any:
        return _load(self.source)(**kwargs)

    def start_demo_emulator(self, **kwargs: Any) -> Any:
        """Start the emulator with its demo data; returns (emulator, env vars for the source)."""
        return _load(self.emulator)(**kwargs)


def _load(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


PROVIDERS: Dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("ecr", "AWS ECR", "sources.ecr:ecr_source", "emulators.ecr:start_demo"),
        Provider("yandex", "Yandex Cloud Container Registry", "sources.yandex:yandex_source", "emulators.yandex:start_demo"),
        Provider("ncp", "Naver Cloud Container Registry", "sources.ncp:ncp_source", "emulators.ncp:start_demo"),
        Provider("swr", "Huawei Cloud SWR", "sources.swr:swr_source", "emulators.swr:start_demo"),
        Provider("oci", "OCI registry", "sources.oci:oci_source", "emulators.oci:start_demo"),
    )
}

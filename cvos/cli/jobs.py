"""The running Hydra job: its folder and whether it is part of a sweep; instantiation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cvos.errors import CVOSError


def job_context() -> tuple[Path, bool]:
    """The current Hydra job's output folder, and whether it is one job of a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = HydraConfig.get()
    return Path(config.runtime.output_dir), config.mode == RunMode.MULTIRUN


def instantiate(config: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, re-raising our own user errors instead of Hydra's wrapper."""
    import hydra
    from hydra.errors import InstantiationException

    try:
        return hydra.utils.instantiate(config, **kwargs, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, CVOSError):
            raise err.__cause__ from None
        raise

"""The one Ray start-up: local by default, or join a cluster (``auto``, ``ray://host:10001``)."""

from __future__ import annotations

import os

from issuerisk.conf.settings import RayConfig


def init_ray(cfg: RayConfig) -> dict[str, str]:
    """Start or join Ray as configured and return facts for the run manifest.

    No other code calls ``ray.init``; stages ask :class:`issuerisk.context.Context`.
    The offline and cache variables of this process reach every worker, local or remote.
    """
    import ray

    if not ray.is_initialized():
        env = {
            k: os.environ[k]
            for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "NUMBA_CACHE_DIR")
            if k in os.environ
        }
        kwargs = {
            "namespace": cfg.namespace,
            "log_to_driver": False,
            "configure_logging": False,
            "runtime_env": {"env_vars": env},
        }
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=cfg.include_dashboard, **kwargs)
    resources = ray.cluster_resources()
    return {
        "ray": ray.__version__,
        "ray_address": cfg.address or "local",
        "ray_cpus": str(int(resources.get("CPU", 0))),
        "ray_gpus": str(int(resources.get("GPU", 0))),
    }

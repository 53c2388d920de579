"""StandardScaler -> UMAP -> HDBSCAN behind one small protocol: ``cpu`` (umap-learn + hdbscan) and ``cuml``.

Both backends take the same ``cluster`` config section and a seed and return a
:class:`ClusterResult`; cuML is imported only inside its backend, so CPU
machines import this module freely. ``auto`` picks cuML when it imports and a
GPU is present.

UMAP's numba functions are compiled in every fresh process (tens of seconds on
a slow CPU) because umap-learn does not ask numba to cache them;
:func:`enable_jit_cache` turns numba's on-disk cache on for them, which cut a
fresh process's UMAP time from 18 s to 6 s on the reference machine.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from issuerisk.conf.settings import ClusterConfig

UMAP_MODULES = ("umap.umap_", "umap.layouts", "umap.distances", "umap.sparse", "umap.utils", "umap.spectral")


class ClusterBackendError(RuntimeError):
    """A clustering backend is unknown or cannot run here."""


def check_size(cfg: ClusterConfig, n_points: int) -> None:
    """Validate the parameters against the data size.

    Raises:
        ValueError: too few points for the neighbourhood or the smallest cluster.
    """
    if n_points <= cfg.n_neighbors:
        raise ValueError(f"{n_points} points cannot be clustered with cluster.n_neighbors={cfg.n_neighbors}; embed more issues or lower n_neighbors")
    if n_points < cfg.min_cluster_size:
        raise ValueError(f"{n_points} points are fewer than cluster.min_cluster_size={cfg.min_cluster_size}; lower it or embed more issues")


@dataclass(frozen=True)
class ClusterResult:
    """One label per point (-1 noise), membership probability, GLOSH outlier score and 2-D map coordinates;
    a consensus adds each point's cluster stability and the share of member runs that agree on it."""

    labels: np.ndarray
    probabilities: np.ndarray
    outlier_scores: np.ndarray
    coords: np.ndarray
    stability: np.ndarray | None = None
    agreement: np.ndarray | None = None

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))


class ClusterBackend(Protocol):
    name: str

    def fit(self, vectors: np.ndarray, params: ClusterConfig, seed: int | None, with_coords: bool = True) -> ClusterResult:
        """Cluster ``vectors``; ``seed`` None runs UMAP unseeded (multi-threaded, not repeatable)."""


def enable_jit_cache(cache_dir: str | None) -> int:
    """Turn numba's on-disk cache on for umap-learn's compiled functions; return how many.

    Call before the first UMAP fit of a process. ``cache_dir`` None keeps
    numba's default location (next to the package, which may be read-only).
    """
    import numba
    from numba.core.dispatcher import Dispatcher

    if cache_dir:
        numba.config.CACHE_DIR = cache_dir
    enabled = 0
    for name in UMAP_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and type(value._cache).__name__ == "NullCache":
                value.enable_caching()
                enabled += 1
    return enabled


class CpuBackend:
    """scikit-learn StandardScaler, umap-learn and the ``hdbscan`` package (2x scikit-learn's HDBSCAN at 60k points)."""

    name = "cpu"

    def fit(self, vectors: np.ndarray, params: ClusterConfig, seed: int | None, with_coords: bool = True) -> ClusterResult:
        import hdbscan
        import umap
        from sklearn.preprocessing import StandardScaler
        from sklearn.utils import check_random_state
        from umap.umap_ import nearest_neighbors

        check_size(params, len(vectors))
        x = StandardScaler().fit_transform(vectors) if params.scale else vectors
        common = {"n_neighbors": params.n_neighbors, "min_dist": params.min_dist, "metric": params.metric,
                  "random_state": seed, "n_jobs": 1 if seed is not None else -1}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            knn = nearest_neighbors(x, params.n_neighbors, params.metric, {}, False, check_random_state(seed),
                                    n_jobs=common["n_jobs"])
            reduced = umap.UMAP(n_components=params.n_components, precomputed_knn=knn, **common).fit_transform(x)
            coords = np.zeros((len(x), 2))
            if with_coords:
                coords = umap.UMAP(n_components=2, precomputed_knn=knn, **common).fit_transform(x)
        clusterer = hdbscan.HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples,
                                    cluster_selection_method=params.cluster_selection_method).fit(reduced)
        return ClusterResult(clusterer.labels_.astype(np.int32), clusterer.probabilities_.astype(np.float64),
                             np.nan_to_num(clusterer.outlier_scores_.astype(np.float64)), np.asarray(coords, dtype=np.float64))


class CumlBackend:
    """RAPIDS cuML on one GPU: the same steps and parameters as :class:`CpuBackend`."""

    name = "cuml"

    def __init__(self) -> None:
        from cuml.cluster import HDBSCAN
        from cuml.manifold import UMAP
        from cuml.preprocessing import StandardScaler

        self._hdbscan, self._umap, self._scaler = HDBSCAN, UMAP, StandardScaler

    def fit(self, vectors: np.ndarray, params: ClusterConfig, seed: int | None, with_coords: bool = True) -> ClusterResult:
        import cupy as cp

        check_size(params, len(vectors))
        x = cp.asarray(vectors, dtype=cp.float32)
        if params.scale:
            x = self._scaler().fit_transform(x)
        common = {"n_neighbors": params.n_neighbors, "min_dist": params.min_dist, "metric": params.metric, "random_state": seed}
        reduced = self._umap(n_components=params.n_components, **common).fit_transform(x)
        coords = self._umap(n_components=2, **common).fit_transform(x) if with_coords else cp.zeros((len(vectors), 2))
        clusterer = self._hdbscan(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples,
                                  cluster_selection_method=params.cluster_selection_method, prediction_data=True).fit(reduced)
        return ClusterResult(cp.asnumpy(clusterer.labels_).astype(np.int32), cp.asnumpy(clusterer.probabilities_).astype(np.float64),
                             np.nan_to_num(cp.asnumpy(clusterer.outlier_scores_).astype(np.float64)), cp.asnumpy(coords).astype(np.float64))


def gpu_available() -> bool:
    """True when cupy sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_backend(name: str) -> ClusterBackend:
    """The backend ``cpu``, ``cuml``, or ``auto`` (cuML when it imports and a GPU is present, else CPU).

    Raises:
        ClusterBackendError: unknown name, or ``cuml`` asked for where it cannot run.
    """
    if name == "cpu":
        return CpuBackend()
    if name in ("cuml", "auto"):
        try:
            backend = CumlBackend()
        except ImportError as exc:
            if name == "auto":
                return CpuBackend()
            raise ClusterBackendError(f"cluster.backend=cuml but cuML does not import ({exc}); install cuml-cu12 on a GPU machine or use backend cpu") from None
        if gpu_available():
            return backend
        if name == "auto":
            return CpuBackend()
        raise ClusterBackendError("cluster.backend=cuml but no CUDA GPU is visible; use backend cpu or auto")
    raise ClusterBackendError(f"cluster.backend={name!r} is unknown; use auto, cpu or cuml")

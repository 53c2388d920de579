"""StandardScaler -> UMAP -> HDBSCAN behind one small protocol: ``cpu`` (umap-learn + hdbscan) and ``cuml``.

A backend does three steps with the same ``cluster`` config section: prepare
(scale, and the exact kNN graph every run shares), reduce (UMAP with a seed) and
density (HDBSCAN). :func:`single_run` and :func:`member_run` compose them; cuML
is imported only inside its backend, so CPU machines import this module freely.
``auto`` picks cuML when it imports and a GPU is present.

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
        raise ValueError(
            f"{n_points} points cannot be clustered with cluster.n_neighbors={cfg.n_neighbors}; embed more issues or "
            "lower n_neighbors"
        )
    if n_points < cfg.min_cluster_size:
        raise ValueError(
            f"{n_points} points are fewer than cluster.min_cluster_size={cfg.min_cluster_size}; lower it or embed more "
            "issues"
        )


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
    validity: float | None = None

    @property
    def n_clusters(self) -> int:
        return int(len(set(self.labels.tolist()) - {-1}))


@dataclass(frozen=True)
class Prepared:
    """The scaled vectors and their exact kNN graph (indices with each point first, and distances), shared by every
    run."""

    x: np.ndarray
    knn_indices: np.ndarray
    knn_distances: np.ndarray


@dataclass(frozen=True)
class Density:
    """One HDBSCAN fit: labels (-1 noise), membership probabilities, GLOSH outlier scores and DBCV (relative
    validity)."""

    labels: np.ndarray
    probabilities: np.ndarray
    outlier_scores: np.ndarray
    validity: float | None


class ClusterBackend(Protocol):
    """The three steps of a run, on the same kNN graph for every seed."""

    name: str

    def prepare(self, vectors: np.ndarray, params: ClusterConfig) -> Prepared:
        """StandardScaler (when ``params.scale``) and the exact kNN graph (deterministic)."""

    def reduce(self, prepared: Prepared, params: ClusterConfig, seed: int | None, n_components: int) -> np.ndarray:
        """UMAP on the prepared graph; ``seed`` None runs unseeded (multi-threaded, not repeatable)."""

    def density(self, reduced: np.ndarray, params: ClusterConfig, selection: str) -> Density:
        """HDBSCAN with the given cluster selection method (eom or leaf)."""


FEW_POINTS_EPOCHS, MANY_POINTS_EPOCHS, MOST_POINTS_EPOCHS = 500, 200, 100


def umap_epochs(params: ClusterConfig, n_points: int) -> int:
    """UMAP's optimization epochs: ``cluster.n_epochs``, else 500 under ``cluster.fewer_epochs_from`` (5,000) points,
    200 from there and 100 from ``cluster.fewest_epochs_from`` (20,000).

    The epochs are nearly all of a fit's time (200 cost a third of 500). umap-learn itself switches to 200
    at 10,000 points; measured on real issues of repositories outside bench.pipeline's subsets
    (``python -m bench.stability --repositories dev``), one disjoint seed-set pair each: at 8,000 issues 200 epochs
    agree at ARI 0.93 (300: 0.86, 500: 0.96; the pair-to-pair spread is as large as the epochs' effect) with the
    same agreement with the label kinds (NMI 0.093 against 0.095) at a third of the cost; at 2,000 the epochs
    matter (200: 0.80, 300: 0.83, 500: 0.89).
    """
    if params.n_epochs:
        return params.n_epochs
    if params.fewest_epochs_from is not None and n_points >= params.fewest_epochs_from:
        return MOST_POINTS_EPOCHS
    return FEW_POINTS_EPOCHS if n_points < params.fewer_epochs_from else MANY_POINTS_EPOCHS


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
    """scikit-learn StandardScaler and exact kNN, umap-learn and the ``hdbscan`` package (2x scikit-learn's HDBSCAN at
    60k points)."""

    name = "cpu"

    def prepare(self, vectors: np.ndarray, params: ClusterConfig) -> Prepared:
        from sklearn.neighbors import NearestNeighbors
        from sklearn.preprocessing import StandardScaler

        check_size(params, len(vectors))
        x = (
            StandardScaler().fit_transform(vectors).astype(np.float32)
            if params.scale
            else np.asarray(vectors, np.float32)
        )
        distances, indices = (
            NearestNeighbors(n_neighbors=params.n_neighbors, metric=params.metric, algorithm="brute")
            .fit(x)
            .kneighbors(x)
        )
        return Prepared(x, indices.astype(np.int32), distances.astype(np.float32))

    def reduce(self, prepared: Prepared, params: ClusterConfig, seed: int | None, n_components: int) -> np.ndarray:
        import umap

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*overridden to 1 by setting random_state.*")
            warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
            return umap.UMAP(
                n_components=n_components,
                n_neighbors=params.n_neighbors,
                min_dist=params.min_dist,
                metric=params.metric,
                n_epochs=umap_epochs(params, len(prepared.x)),
                random_state=seed,
                n_jobs=1 if seed is not None else -1,
                precomputed_knn=(prepared.knn_indices, prepared.knn_distances, None),
            ).fit_transform(prepared.x)

    def density(self, reduced: np.ndarray, params: ClusterConfig, selection: str) -> Density:
        import hdbscan

        fitted = hdbscan.HDBSCAN(
            min_cluster_size=params.min_cluster_size,
            min_samples=params.min_samples,
            cluster_selection_method=selection,
            gen_min_span_tree=True,
        ).fit(reduced)
        validity = float(fitted.relative_validity_) if fitted.labels_.max() >= 0 else None
        return Density(
            fitted.labels_.astype(np.int64),
            fitted.probabilities_.astype(np.float64),
            np.nan_to_num(fitted.outlier_scores_.astype(np.float64)),
            validity,
        )


class CumlBackend:
    """RAPIDS cuML on one GPU: the same steps and parameters as :class:`CpuBackend` (results come back as numpy)."""

    name = "cuml"

    def __init__(self) -> None:
        from cuml.cluster import HDBSCAN
        from cuml.manifold import UMAP
        from cuml.neighbors import NearestNeighbors
        from cuml.preprocessing import StandardScaler

        self._hdbscan, self._umap, self._neighbors, self._scaler = HDBSCAN, UMAP, NearestNeighbors, StandardScaler

    def prepare(self, vectors: np.ndarray, params: ClusterConfig) -> Prepared:
        import cupy as cp

        check_size(params, len(vectors))
        x = cp.asarray(vectors, dtype=cp.float32)
        if params.scale:
            x = self._scaler().fit_transform(x)
        distances, indices = self._neighbors(n_neighbors=params.n_neighbors, metric=params.metric).fit(x).kneighbors(x)
        return Prepared(cp.asnumpy(x), cp.asnumpy(indices).astype(np.int32), cp.asnumpy(distances).astype(np.float32))

    def reduce(self, prepared: Prepared, params: ClusterConfig, seed: int | None, n_components: int) -> np.ndarray:
        import cupy as cp

        model = self._umap(
            n_components=n_components,
            n_neighbors=params.n_neighbors,
            min_dist=params.min_dist,
            metric=params.metric,
            n_epochs=umap_epochs(params, len(prepared.x)),
            random_state=seed,
            precomputed_knn=(prepared.knn_indices, prepared.knn_distances),
        )
        return cp.asnumpy(model.fit_transform(cp.asarray(prepared.x)))

    def density(self, reduced: np.ndarray, params: ClusterConfig, selection: str) -> Density:
        import cupy as cp

        fitted = self._hdbscan(
            min_cluster_size=params.min_cluster_size,
            min_samples=params.min_samples,
            cluster_selection_method=selection,
            prediction_data=True,
        ).fit(cp.asarray(reduced))
        return Density(
            cp.asnumpy(fitted.labels_).astype(np.int64),
            cp.asnumpy(fitted.probabilities_).astype(np.float64),
            np.nan_to_num(cp.asnumpy(fitted.outlier_scores_).astype(np.float64)),
            None,
        )


def single_run(
    backend: ClusterBackend, prepared: Prepared, params: ClusterConfig, seed: int | None, with_coords: bool = True
) -> ClusterResult:
    """One StandardScaler -> UMAP -> HDBSCAN run (the fast setting, ``cluster.method: single``)."""
    reduced = backend.reduce(prepared, params, seed, params.n_components)
    fit = backend.density(reduced, params, params.cluster_selection_method)
    coords = backend.reduce(prepared, params, seed, 2) if with_coords else np.zeros((len(prepared.x), 2))
    return ClusterResult(
        fit.labels.astype(np.int32),
        fit.probabilities,
        fit.outlier_scores,
        np.asarray(coords, dtype=np.float64),
        validity=fit.validity,
    )


def member_run(
    backend: ClusterBackend,
    prepared: Prepared,
    params: ClusterConfig,
    seed: int,
    selections: tuple[str, ...],
    keep_reduced: bool = False,
) -> dict[str, object]:
    """One seeded member of a consensus: per selection its raw labels and its labels with noise filled by the nearest
    clustered points; and its reduced vectors when ``keep_reduced``."""
    from issuerisk.clustering.consensus import fill_noise

    reduced = backend.reduce(prepared, params, seed, params.n_components)
    out: dict[str, object] = {}
    for selection in selections:
        fit = backend.density(reduced, params, selection)
        out[selection] = (fit.labels, fill_noise(reduced, fit.labels))
    if keep_reduced:
        out["reduced"] = reduced
    return out


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
            raise ClusterBackendError(
                f"cluster.backend=cuml but cuML does not import ({exc}); install cuml-cu12 on a GPU machine or use "
                "backend cpu"
            ) from None
        if gpu_available():
            return backend
        if name == "auto":
            return CpuBackend()
        raise ClusterBackendError("cluster.backend=cuml but no CUDA GPU is visible; use backend cpu or auto")
    raise ClusterBackendError(f"cluster.backend={name!r} is unknown; use auto, cpu or cuml")

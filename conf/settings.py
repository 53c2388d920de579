"""Typed, validated configuration for every stage: the models (sections, defaults, rules); loading is in
:mod:`issuerisk.conf.loader`.

A YAML file (``conf/default.yaml`` unless told otherwise) is merged with
environment overrides and validated once; every problem is collected and
raised together in one :class:`ConfigError` that names the key, the bad value
and the fix. Secrets (GitHub tokens, API keys) are never configuration: they
are read from the environment by the clients that need them, and a URL that
carries credentials (``user:key@`` or a ``key=`` parameter) is refused, since
the resolved configuration is stored with every run.

Environment overrides follow the schema: ``ISSUERISK__SECTION__KEY`` (and
``ISSUERISK__SUMMARIZE__LLM__MODEL`` for a section inside a section) names
sections and keys case-insensitively; below a key whose value is a mapping
(``spark.extra``, ``github.framework_queries``) the rest of the variable's name
is the mapping's key, verbatim (``ISSUERISK__SPARK__EXTRA__spark.sql.ansi.enabled``).
A string key takes the value verbatim; other keys read it as YAML.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from issuerisk.conf.secrets import url_credentials
from issuerisk.constants import DISSOLVED_BELOW, FRAMEWORKS

CONF_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONF_DIR / "default.yaml"
ENV_PREFIX = "ISSUERISK__"
SECRET_NAMES = ("token", "tokens", "secret", "password", "api_key", "apikey", "access_key", "secret_key")


class ConfigError(ValueError):
    """Raised when the configuration cannot be loaded or does not validate."""


def _no_credentials(value: str | None, fix: str) -> str | None:
    """Refuse a URL with credentials in it; the error names the place in the URL, never the value."""
    where = url_credentials(value)
    if where:
        raise PydanticCustomError(
            "credentials_in_url",
            "the URL carries credentials ({where}); the resolved configuration is stored with every run, so remove "
            "them and {fix}",
            {"where": where, "fix": fix},
        )
    return value


STORAGE_CREDENTIALS = "give the storage's credentials through its provider or environment (e.g. AWS_ACCESS_KEY_ID)"


def user_cache(name: str) -> str:
    """``$XDG_CACHE_HOME/issuerisk/<name>`` (``~/.cache/issuerisk/<name>``): a cache shared by every warehouse of this
    user on this machine."""
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "issuerisk" / name)


class _Section(BaseModel):
    # hide_input_in_errors: a raw ValidationError (a section built in code) never prints a value, which may be
    # a URL with credentials; validate() shows values itself, except where a URL carries credentials.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ProjectConfig(_Section):
    """Where the lakehouse lives and what makes a run repeatable."""

    warehouse: str = Field(description="Folder or URI (s3a://...) holding the Delta tables and the catalog.")
    database: str = "issuerisk"
    seed: int = 42
    reports_dir: str = "reports"
    sample_size: int | None = Field(
        None, ge=1, description="Summarize, embed and cluster only this many silver issues (seeded); None takes all."
    )
    heartbeat_s: float = Field(
        60.0,
        gt=0,
        description="A running command re-saves its runs row this often, so other hosts can tell it is alive.",
    )
    stale_run_after_s: float = Field(
        900.0,
        gt=0,
        description="A 'running' row of another host whose heartbeat is older than this is marked abandoned (same "
        "host: as soon as its process is gone).",
    )

    @field_validator("database")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"must be a SQL identifier such as 'issuerisk', got {value!r}")
        return value

    @field_validator("warehouse")
    @classmethod
    def _warehouse_without_credentials(cls, value: str) -> str:
        return _no_credentials(value, STORAGE_CREDENTIALS)


class SparkConfig(_Section):
    """How the one SparkSession is built (see ``issuerisk.lakehouse.spark_session``)."""

    master: str = "local[*]"
    app_name: str = "issuerisk"
    driver_memory: str = "4g"
    shuffle_partitions: int = Field(8, ge=1)
    jars_dir: str | None = Field(
        None, description="Folder of Delta jars for air-gapped clusters; None resolves them from Maven."
    )
    metastore_uri: str | None = Field(
        None, description="thrift:// URI of a shared Hive metastore; None keeps an embedded one in the warehouse."
    )
    metastore_jdbc_url: str | None = Field(
        None,
        description="JDBC URL of a shared metastore database (jdbc:postgresql://host:5432/metastore) that every driver "
        "opens "
        "itself, its schema created on first use; the password comes from ISSUERISK_METASTORE_PASSWORD. None: "
        "metastore_uri or embedded.",
    )
    metastore_user: str | None = Field(None, description="User of metastore_jdbc_url.")
    packages: list[str] = Field(
        default_factory=list,
        description="Further Maven packages (group:artifact:version) for the driver and executors.",
    )
    driver_class_path: list[str] = Field(
        default_factory=list,
        description="Jars on the driver JVM's own class path: a metastore database's JDBC driver "
        "goes here, since java.sql.DriverManager does not see jars added at run time (spark.packages).",
    )
    remote: str | None = Field(
        None,
        description="sc://host:port of an `issuerisk serve` Spark Connect server: `issuerisk sql` uses it when it "
        "answers, "
        "else starts its own Spark; None: always its own. `issuerisk serve` listens on its port.",
    )
    driver_java_options: str | None = Field(
        None,
        description="JVM options of the driver (in local mode the JVM that runs every task), e.g. "
        "-XX:TieredStopAtLevel=1; None keeps the JVM's defaults.",
    )
    class_archive: bool = Field(
        True,
        description="Keep the driver JVM's classes in a class-data-sharing archive, written by a machine's first "
        "Spark start and mapped by every later one (issuerisk.lakehouse.class_archive); false: every JVM loads "
        "its classes from the jars.",
    )
    class_archive_dir: str | None = Field(
        None,
        description="Where the class archive is kept; None uses this user's cache folder on the machine "
        "(~/.cache/issuerisk/jvm).",
    )
    extra: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings.")
    log_level: str = "ERROR"

    @field_validator("extra")
    @classmethod
    def _driver_options_have_their_key(cls, value: dict[str, str]) -> dict[str, str]:
        if "spark.driver.extraJavaOptions" in value:
            raise ValueError(
                "set the driver's JVM options in spark.driver_java_options, not "
                "spark.extra['spark.driver.extraJavaOptions'] "
                "(the factory adds the embedded metastore's options to them)"
            )
        for key, setting in value.items():
            where = url_credentials(setting)
            if where:
                raise PydanticCustomError(
                    "credentials_in_url",
                    "spark.extra['{key}'] is a URL that carries credentials ({where}); "
                    "remove them and " + STORAGE_CREDENTIALS,
                    {"key": key, "where": where},
                )
        return value

    @field_validator("master", "metastore_uri", "remote")
    @classmethod
    def _urls_without_credentials(cls, value: str | None) -> str | None:
        return _no_credentials(value, "give credentials through the environment")

    @field_validator("metastore_jdbc_url")
    @classmethod
    def _jdbc_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("jdbc:") or "://" not in value:
            raise ValueError("must be a JDBC URL such as jdbc:postgresql://metastore-db:5432/metastore")
        _no_credentials(
            value.removeprefix("jdbc:"),
            "set spark.metastore_user and export the password as ISSUERISK_METASTORE_PASSWORD",
        )
        return value

    @field_validator("packages")
    @classmethod
    def _maven_coordinates(cls, value: list[str]) -> list[str]:
        bad = [p for p in value if len(p.split(":")) != 3 or not all(p.split(":"))]
        if bad:
            raise ValueError(
                f"{bad} must be Maven coordinates group:artifact:version, e.g. org.postgresql:postgresql:42.7.14"
            )
        return value

    @field_validator("remote")
    @classmethod
    def _connect_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sc://"):
            raise ValueError("must be a Spark Connect URL such as sc://127.0.0.1:15002")
        if value is not None and any(f";{word}=" in value.lower() for word in ("token", "user_id", "password")):
            raise PydanticCustomError(
                "credentials_in_url",
                "the Spark Connect URL carries credentials (a ;token= or ;user_id= parameter); "
                "remove them: the resolved configuration is stored with every run",
                {},
            )
        return value

    @model_validator(mode="after")
    def _one_metastore(self) -> "SparkConfig":
        if self.metastore_uri and self.metastore_jdbc_url:
            raise ValueError(
                "set spark.metastore_uri (a metastore service) or spark.metastore_jdbc_url (its database), not both"
            )
        if self.metastore_jdbc_url and not self.metastore_user:
            raise ValueError(
                "spark.metastore_jdbc_url needs spark.metastore_user (the password comes from "
                "ISSUERISK_METASTORE_PASSWORD)"
            )
        return self


class RayConfig(_Section):
    """Where Ray runs: ``None`` starts a local instance, ``auto`` or ``ray://host:10001`` joins a cluster."""

    address: str | None = None
    num_cpus: int | None = Field(None, ge=1)
    num_gpus: int | None = Field(None, ge=0)
    namespace: str = "issuerisk"
    include_dashboard: bool = False

    @field_validator("address")
    @classmethod
    def _address_without_credentials(cls, value: str | None) -> str | None:
        return _no_credentials(value, "give credentials through the environment")


class IngestConfig(_Section):
    """Reading GitHub issue objects into ``bronze_issues``."""

    batch_files: int = Field(64, ge=1, description="Files parsed per Spark task.")
    max_record_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="A record (one JSON Lines line or array item) larger than this is rejected (record_too_large); "
        "GitHub caps a body at 65,536 characters.",
    )
    max_file_bytes: int = Field(
        1 << 30,
        ge=1 << 16,
        description="A file whose (decompressed) size passes this is read only up to it; the rest is rejected "
        "(file_too_large), bounding a parse task's memory.",
    )


class FrameworkInferenceConfig(_Section):
    """Per-repository framework tags inferred from issue evidence."""

    min_evidence: int = Field(2, ge=1, description="Issues with evidence a repository needs before it gets a tag.")
    min_share: float = Field(
        0.2,
        gt=0,
        le=1,
        description="Share of the repository's strongest framework evidence another framework needs to be tagged too.",
    )


class FilterConfig(_Section):
    """Rules that build ``silver_issues`` from bronze."""

    language: str = "en"
    language_min_confidence: float = Field(0.5, ge=0, le=1)
    language_min_chars: int = Field(
        20, ge=0, description="Texts shorter than this are kept without a language verdict."
    )
    bot_login_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\[bot\]$",
            r"-bot$",
            r"^dependabot",
            r"^renovate",
            r"^github-actions",
            r"^stale",
            r"^codecov",
            r"^allcontributors",
        ]
    )
    excluded_repo_keywords: list[str] = Field(
        default_factory=lambda: ["tutorial", "handbook", "course", "book", "awesome", "ui", "gui", "webui"]
    )
    near_duplicate_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Jaccard similarity of word shingles above which two issues of one repository are duplicates.",
    )


class EndpointConfig(_Section):
    """An OpenAI-compatible chat endpoint; the key comes from ``OPENAI_API_KEY``."""

    base_url: str | None = Field(None, description="None honours OPENAI_BASE_URL, then the client's default.")
    model: str = "gpt-4o-mini"
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    concurrency: int = Field(
        32, ge=1, description="Requests in flight; 32 sustains >= 100 requests/s at 200 ms per answer."
    )
    max_retries: int = Field(5, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    input_token_budget: int = Field(3000, ge=64)
    prompt_version: str = "v1"

    @field_validator("base_url")
    @classmethod
    def _base_url_without_credentials(cls, value: str | None) -> str | None:
        return _no_credentials(value, "export the key as OPENAI_API_KEY")


class LLMConfig(EndpointConfig):
    """The summaries' endpoint and prompt."""

    prompt: Literal["failure", "reference"] = Field(
        "failure",
        description="failure: symptom, trigger, component and environment in a fixed short form; reference: the "
        "reference study's generic summary prompt.",
    )
    max_answer_chars: int = Field(
        1200,
        ge=80,
        description="Longer answers are not summaries: the issue gets its extractive summary instead (counted by "
        "reason).",
    )


class KindsLLMConfig(EndpointConfig):
    """The endpoint that names kinds when ``kinds.method`` is ``llm``: one word per issue."""

    max_tokens: int = Field(8, ge=1, description="The answer is one word: defect, feature, question, ...")
    input_token_budget: int = Field(1500, ge=64)
    check_issues: int = Field(
        300,
        ge=0,
        description="Labelled defects, features and questions of the input (a seeded sample) also asked, so the run "
        "reports the LLM's agreement with their labels, per class (0: no check).",
    )


class SummarizeConfig(_Section):
    """Issue summaries before embedding."""

    summarizer: Literal["extractive", "llm"] = "extractive"
    token_budget: int = Field(96, ge=8, description="Extractive summary length in whitespace tokens.")
    rules: Literal["r1", "r2"] = Field(
        "r2",
        description="Extractive rules: r2 puts the failure first (errors, API calls, versions), r1 is the earlier "
        "order.",
    )
    batch_size: int = Field(
        1000,
        ge=1,
        description="LLM summaries MERGEd into silver_summaries per batch (a crash loses at most one batch); "
        "extractive ones are MERGEd once.",
    )
    llm: LLMConfig = Field(default_factory=LLMConfig)


class EmbedConfig(_Section):
    """Sentence embeddings in Ray actors."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    model_path: str | None = Field(
        None, description="Local folder of the model; None finds the packaged MiniLM or the HF cache (offline)."
    )
    query_prefix: str = Field(
        "", description="Prepended to every text, e.g. 'Instruct: ...\\nQuery: ' for e5-instruct models."
    )
    max_seq_length: int = Field(128, ge=8)
    batch_size: int = Field(
        16,
        ge=1,
        description="Texts per forward pass. 16 is fastest on CPUs (fused onnx fp32 on this 2-core CPU: 146 texts/s "
        "against 128 at 64, whose activations outgrow the caches); GPUs want hundreds (conf/cluster.example.yaml: "
        "256).",
    )
    rows_per_task: int = Field(2048, ge=1, description="Rows read from Delta and merged per round trip.")
    actors: int | None = Field(None, ge=1, description="None: one per GPU, else one per cpus_per_actor CPUs.")
    cpus_per_actor: int = Field(2, ge=1, description="CPUs (torch threads) per actor on a CPU cluster.")
    max_in_flight: int = Field(
        2, ge=1, description="Batches queued per actor, so actors compute while the driver merges."
    )
    fp16_on_gpu: bool = True
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "onnx",
        description="Inference: onnx (the transformer exported to ONNX, fp32, run by onnxruntime on CPUs: the same "
        "vectors as torch's, 1.7x as fast here), torch (fp32 on CPUs, fp16 on GPUs: what a GPU cluster must use) or "
        "onnx-int8 (int8 weights, 3x as fast but its clustering agrees with fp32's at ARI 0.42 only: "
        "python -m bench.encoder_backends). Vectors of each backend are kept apart (gold_embeddings.model is "
        "'<backend>:<model>' for the ONNX ones).",
    )
    onnx_cache_dir: str | None = Field(
        None,
        description="Where exported ONNX models are kept, by model and weight hash (default: this user's cache "
        "folder, ~/.cache/issuerisk/onnx).",
    )

    @property
    def key(self) -> str:
        """What ``gold_embeddings.model`` (and every table that names the vectors' model) records: the model, with
        the backend in front when it is not torch's."""
        return self.model if self.backend == "torch" else f"{self.backend}:{self.model}"

    def onnx_cache(self) -> str:
        """The folder exported ONNX models are kept in (an absolute path)."""
        return os.path.abspath(self.onnx_cache_dir) if self.onnx_cache_dir else user_cache("onnx")


class MaskConfig(_Section):
    """Project-only words removed from each repository's texts before embedding and topic keywords."""

    enabled: bool = True
    min_docs: int = Field(
        5, ge=1, description="Issues of the corpus that must use a word before it can be project-only."
    )
    min_share: float = Field(
        0.8, gt=0.5, le=1, description="Share of those issues one repository must hold for the word to be its own."
    )


class ProfileConfig(_Section):
    """Precautions before clustering: each check warns in the report when its value crosses its threshold.

    Upper limits warn when the value is at or above them; lower limits (``min_*``) when it is below them.
    """

    max_top_repository_share: float = Field(
        0.10,
        gt=0,
        le=1,
        description="Share of a scope's issues in its largest repository (a pattern of one repository is not a "
        "framework risk).",
    )
    max_top10_repository_share: float = Field(
        0.50, gt=0, le=1, description="Share of a scope's issues in its ten largest repositories."
    )
    max_repository_gini: float = Field(
        0.80, gt=0, le=1, description="Gini coefficient of issues per repository (0 even, 1 all in one)."
    )
    min_framework_share: float = Field(
        0.10, ge=0, le=1, description="Share of all issues a framework must hold for comparisons to mean much."
    )
    max_empty_body_share: float = Field(0.05, gt=0, le=1, description="Share of issues with an empty body.")
    short_body_chars: int = Field(
        80, ge=1, description="A body shorter than this (characters, stripped) is very short."
    )
    max_short_body_share: float = Field(0.20, gt=0, le=1, description="Share of issues with a very short body.")
    min_label_coverage: float = Field(
        0.30,
        ge=0,
        le=1,
        description="Share of issues carrying at least one GitHub label (kinds from labels, not the classifier).",
    )
    max_open_share: float = Field(
        0.50, gt=0, le=1, description="Share of open issues (their time to resolve is censored)."
    )
    max_excluded_share: float = Field(0.50, gt=0, le=1, description="Share of bronze issues the filter excluded.")
    drift_period_share: float = Field(
        0.25,
        gt=0,
        lt=0.5,
        description="The first and last periods compared for drift: the earliest and latest this share of a scope's "
        "issues.",
    )
    min_period_issues: int = Field(
        30, ge=5, description="Fewer issues than this in a period: no drift check for the scope."
    )
    drift_sample: int = Field(400, ge=10, description="Issues per period the MMD is computed on (a seeded sample).")
    drift_permutations: int = Field(200, ge=0, description="Permutations of the MMD test (its p-value).")
    max_mmd: float = Field(
        0.02,
        gt=0,
        description="Squared MMD (RBF kernel, median-distance bandwidth) between the first and last periods' "
        "embeddings.",
    )
    max_centroid_shift: float = Field(
        0.05, gt=0, le=2, description="Cosine distance between the first and last periods' mean embeddings."
    )


class ExplainConfig(_Section):
    """Why an issue sits in its pattern: occlusion of sentences and tokens, and integrated gradients, toward the cluster
    centroid."""

    representatives: int = Field(
        3, ge=0, description="Representative issues explained per graded cluster in a run (0: none)."
    )
    clusters: int = Field(10, ge=0, description="Graded clusters explained in a run, most severe first (0: none).")
    steps: int = Field(20, ge=2, description="Interpolation steps of integrated gradients.")
    top_tokens: int = Field(8, ge=0, description="Most salient words also checked by removing them (occlusion).")
    max_chars: int = Field(2000, ge=100, description="Characters of the embedded text explained at most.")


class ClusterConfig(_Section):
    """StandardScaler -> UMAP -> HDBSCAN; identical parameters for every backend."""

    backend: Literal["auto", "cpu", "cuml"] = "auto"
    scale: bool = True
    n_neighbors: int = Field(15, ge=2)
    n_components: int = Field(5, ge=1)
    min_dist: float = Field(0.0, ge=0)
    n_epochs: int | None = Field(
        None,
        ge=10,
        description="UMAP optimization epochs; None: 500 under cluster.fewer_epochs_from issues, 200 from there, "
        "100 from cluster.fewest_epochs_from (python -m bench.stability --n-epochs measures the trade).",
    )
    fewer_epochs_from: int = Field(
        5000,
        ge=0,
        description="Issues from which UMAP runs 200 epochs instead of 500 when n_epochs is null; umap-learn's own "
        "switch is 10,000, which replays of runs recorded before this key use.",
    )
    fewest_epochs_from: int | None = Field(
        20000,
        ge=0,
        description="Issues from which UMAP runs 100 epochs when n_epochs is null (None: never). On issues of dev "
        "repositories, disjoint seed sets of the consensus agree with 100 epochs at ARI 0.935 and 0.927 (20,000 "
        "issues, 54 s per consensus) and 0.927 and 0.924 (30,000, 85 s; 200 epochs: 0.936 at 132 s), with the same "
        "agreement with label kinds (python -m bench.stability --repositories dev --issues 30000 --n-epochs 100).",
    )
    metric: str = "cosine"
    min_cluster_size: int = Field(15, ge=2)
    min_samples: int | None = Field(None, ge=1)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    seeded: bool = Field(
        True,
        description="Seeded UMAP is bit-repeatable but single-threaded; false trades that for speed (single method "
        "only).",
    )
    method: Literal["consensus", "single"] = Field(
        "consensus",
        description="consensus: clusters R seeded runs agree on (stable across seeds); single: one seeded run (fast).",
    )
    consensus_runs: int = Field(
        20,
        ge=2,
        description="Member runs of the consensus (R); disjoint seed sets agree at ARI ~0.90 with 20, ~0.87 with 10.",
    )
    member_selection: Literal["auto", "eom", "leaf"] = Field(
        "auto",
        description="HDBSCAN selection of the member runs; auto: eom unless over 10 % of its runs put half the issues "
        "in one cluster, then leaf.",
    )
    core_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of member runs that must agree for a kNN edge to join two issues into a core.",
    )
    attach_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Vote share an issue needs across member runs to join a core's cluster; below it it is noise.",
    )
    replay_min_ari: float = Field(
        0.95,
        ge=0,
        le=1,
        description="A replay of a cuML (GPU) clustering, which is not bit-repeatable, passes when its labels agree "
        "with the original's to this ARI; CPU replays must be identical.",
    )
    dbcv_sample: int = Field(
        3000,
        ge=100,
        description="Issues DBCV (relative validity) is computed on for a consensus (a seeded sample; it is "
        "quadratic).",
    )
    jit_cache_dir: str | None = Field(
        None,
        description="NUMBA_CACHE_DIR for the clustering process; None uses this user's cache folder on the machine "
        "that fits (~/.cache/issuerisk/numba).",
    )


SEVERITY_LABEL_PATTERN = (
    r"p0|p1|critical|blocker|crash|regression|major bug|important|high priority|high-priority|priority: high"
    r"|priority/important-soon|priority/critical-urgent|security|severity.*"
)
"""Label names (lower case, matched in full) by which maintainers mark an issue severe or urgent, from the real
spellings of the corpus: a signal of harm the grade does not use."""
KINDS = ("defect", "feature", "question", "documentation", "other")
# kind -> a regular expression that must match a normalized label name in full (see
# issuerisk.analysis.kinds.normalize_label).
KIND_LABEL_PATTERNS: dict[str, str] = {
    "defect": (
        r"bugs?|bug ?report|(?:confirmed|major|minor|critical|known) bug|defect|errors?|crash(?:es)?|regression|"
        r"bug ?fix|broken|segfault|something isn'?t working"
    ),
    "feature": (
        r"enhancements?|(?:major|minor) enhancement|features?|feature ?requests?(?: in roadmap)?|new feature|"
        r"small(?:er)? feature|smaler feature|improvements?|model improvement|ideas?|proposal|wish ?list|"
        r"nice to have|user request|new model|new converter|tentacle request|request"
    ),
    "question": (
        r"questions?|questoin|stats question|support|user support|usage|how ?to|howtouse\w*|"
        r"operation problem|understanding|explanation|further information is requested"
    ),
    "documentation": (
        r"docs?|documentation|document|doc improvements?|update readme|readme|fix docs|move to docs|tutorials?"
    ),
    "other": (
        r"maintenance|mnt|chore|refactor(?:ing)?|requires code refactoring|code "
        r"(?:quality|structuring|readability|improvement)|"
        r"tech(?:nical)? debt|clean ?up|housekeeping|tests?|testing|needs tests|ci|ci cd|ci build|ci failing|"
        r"continuous integration|build|dependencies|dependency update|discussions?|announcement|roadmap|epic|"
        r"meta issue|governance|infrastructure|devops|packaging|release"
    ),
}


class KindsConfig(_Section):
    """Issue kinds: from the issue's own GitHub labels, else a classifier trained on the labelled issues."""

    label_patterns: dict[str, str] = Field(
        default_factory=lambda: dict(KIND_LABEL_PATTERNS),
        description="kind -> regular expression matching a normalized label name in full.",
    )
    priority: list[str] = Field(
        default_factory=list,
        description="Which kind wins when an issue's labels name several of defect, feature, question (empty: the "
        "classifier decides).",
    )
    eval_folds: int = Field(
        5, ge=2, description="Folds of the repository-grouped evaluation (no repository in both training and test)."
    )
    method: Literal["classifier", "llm"] = Field(
        "classifier",
        description="Who names the kind of an unlabelled issue: the classifier, or an OpenAI-compatible endpoint "
        "(kinds.llm; the classifier's kind stands where its answer is missing or not a kind).",
    )
    llm: KindsLLMConfig = Field(default_factory=KindsLLMConfig)
    use_embeddings: bool = Field(
        True, description="Add each issue's sentence embedding to its text features when every silver issue has one."
    )
    regularization: float = Field(0.5, gt=0, description="C of the logistic regression.")
    reference_corpus: list[str] = Field(
        default_factory=list,
        description=(
            "Files or folders of GitHub issue objects (as ingest reads them) whose labelled issues train the "
            "classifier when "
            "the input has labelled issues of fewer than eval_folds repositories; relative paths from the current "
            "folder. "
            "The input's own repositories are left out of it, so its labelled issues check the model."
        ),
    )
    model_cache_dir: str | None = Field(
        None,
        description="Where trained classifiers are kept by the hash of their training data; None uses this user's "
        "cache folder (~/.cache/issuerisk/kinds), shared by every warehouse on the machine.",
    )

    @field_validator("label_patterns")
    @classmethod
    def _known_kinds(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; use {list(KINDS)}")
        return value


FAULT_CATEGORIES = {
    "model": "Model definition faults: wrong or missing layers, wrong layer configuration or activation, wrong weight "
    "initialisation, model architecture mismatch, custom layer errors.",
    "tensors and "
    "inputs": "Tensor and input faults: wrong tensor shape or shape mismatch, wrong data type or dtype, wrong input "
    "format, preprocessing or data loading errors, dimension errors.",
    "training": "Training faults: loss becomes NaN or does not decrease, wrong loss function or optimizer, learning "
    "rate, poor accuracy, wrong hyperparameters, evaluation and checkpoint problems.",
    "GPU usage": "GPU faults: CUDA errors, CUDA out of memory, wrong device placement, multi-GPU and distributed "
    "training failures, cuDNN errors.",
    "API": "Framework API faults: deprecated or changed API, wrong API usage or missing argument, incompatible "
    "versions of the framework, saving and loading models fails.",
    "installation and "
    "environment": "Installation and environment faults: pip or conda install fails, dependency version conflicts, "
    "import error, missing module or library, build from source fails, operating system or driver "
    "problems.",
    "performance": "Performance faults: slow training or inference, memory leak, high memory or CPU usage, hang or "
    "deadlock, speed regression.",
}


class TopicsConfig(_Section):
    """BERTopic keywords and representative issues per cluster."""

    top_n_words: int = Field(10, ge=1)
    n_representative: int = Field(5, ge=1)
    min_df: int = Field(
        1,
        ge=1,
        description="Topics (not issues) a keyword must occur in: c-TF-IDF vectorizes one joined document per topic, "
        "so 2 would drop every word unique to one cluster.",
    )
    ngram_max: int = Field(2, ge=1, le=3)
    name_min_coverage: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of a cluster's issues (title and embedded text) a title phrase must occur in to name it "
        "(else its specific keywords do).",
    )
    categories: dict[str, str] = Field(
        default_factory=lambda: dict(FAULT_CATEGORIES),
        description="Fault categories (Humbatova et al. 2020, plus installation and performance) and the descriptions "
        "clusters are matched to.",
    )
    category_threshold: float = Field(
        0.3,
        ge=-1,
        le=1,
        description="Cosine similarity a cluster needs to its closest category description; below it the cluster stays "
        "unmapped.",
    )
    pattern_min_score: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Score (mean of shared-issue Jaccard and centroid cosine) a cluster needs to keep an earlier run's "
        "pattern id.",
    )
    generic_lift: float = Field(
        2.0,
        gt=1,
        description="A cluster's keyword that is not at least this many times as common (share of documents) in the "
        "cluster as in the run's other documents is generic: it does not set the pattern apart (see "
        "risk.max_generic_share).",
    )
    keyword_min_coverage: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of a cluster's issues (embedded texts) a keyword must occur in to be listed among its "
        "first keywords, together with being specific (topics.generic_lift); the others follow in c-TF-IDF order. "
        "A word of two issues in five hundred does not describe the pattern.",
    )
    keyword_max_patterns: int = Field(
        3,
        ge=1,
        description="Patterns a word may be a leading keyword of: those, of the ones listing it, whose issues hold it "
        "most often relative to the corpus (lift). Elsewhere it follows the words of the pattern's own: a word of "
        "many patterns (error, model, training) sets none of them apart. Chosen on dev repositories, 26 patterns "
        "(NPMI on titles and bodies / diversity: 1: 0.05 / 0.97, 2: 0.12 / 0.82, 3: 0.15 / 0.76, no limit: "
        "0.16 / 0.71); fewer owners raise diversity and lower coherence (rarer words).",
    )


class RiskConfig(_Section):
    """The reference risk matrix (bands and grades are fixed by the method) and which clusters it grades."""

    impact_measure: Literal["rmst", "mean_closed"] = Field(
        "rmst",
        description="What feeds the impact tertiles: the Kaplan-Meier restricted mean time to resolve (open issues "
        "censored at the snapshot) or the reference study's mean over closed issues.",
    )
    impact_horizon_days: float = Field(
        365.0, gt=0, description="Horizon of the restricted mean: an issue counts at most this long."
    )
    bootstrap_rounds: int = Field(
        200, ge=1, description="Seeded bootstrap rounds behind each grade's confidence and intervals."
    )
    min_grade_confidence: float = Field(
        0.8, ge=0, le=1, description="The report marks grades whose bootstrap confidence is below this."
    )
    min_defect_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A cluster with a smaller share of defect issues is not a defect pattern and gets no grade.",
    )
    min_repositories: int = Field(
        3, ge=1, description="A cluster graded as a framework risk must hold issues of at least this many repositories."
    )
    max_repository_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="...and no repository may hold more than this share of its issues (else it is project-specific).",
    )
    min_stability: float = Field(
        DISSOLVED_BELOW,
        ge=0,
        le=1,
        description="A cluster whose bootstrap Jaccard stability is below this has dissolved (Hennig) and gets no "
        "grade.",
    )
    severity_labels: str = Field(
        SEVERITY_LABEL_PATTERN,
        description="Regular expression of the label names (lower case, in full) that mark an issue severe or urgent; "
        "the stage checks the grade order against each pattern's share of such issues (Spearman).",
    )
    max_generic_share: float = Field(
        0.4,
        ge=0,
        le=1,
        description="A cluster with at least this share of generic top keywords (topics.generic_lift) is a catch-all, "
        "not a pattern: too broad, not graded.",
    )
    include_clusters: list[int | str] = Field(
        default_factory=list,
        description="Clusters graded whatever the rules say: ids, or words of their name, label or keywords.",
    )
    exclude_clusters: list[int | str] = Field(
        default_factory=list,
        description="Clusters never graded: ids, or words of their name, label or keywords (e.g. docs, chat, setup).",
    )


class TrendsConfig(_Section):
    """Risk over time: issues per pattern per quarter, their trend and which patterns emerge or fade."""

    min_issues: int = Field(20, ge=1, description="Issues a pattern needs in a scope before its trend is tested.")
    min_periods: int = Field(
        4, ge=3, description="Quarters with at least one of its issues a pattern needs before its trend is tested."
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="Significance level of the Mann-Kendall test for growing and fading."
    )
    recent_periods: int = Field(4, ge=1, description="The last quarters of a scope's data that count as recent.")
    emerging_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A pattern with at least this share of its issues in the recent quarters is emerging.",
    )


class VersionsConfig(_Section):
    """Framework versions: which graded patterns are over-represented among the issues that report a version."""

    min_issues: int = Field(
        10, ge=1, description="Clustered issues reporting a version before the version gets rows and a test."
    )
    residual: float = Field(
        1.96, gt=0, description="Adjusted standardized residual above which a pattern is over-represented."
    )
    min_pattern_issues: int = Field(
        5, ge=1, description="Issues of a version a pattern needs before it can be over-represented in it."
    )


class AssignConfig(_Section):
    """New issues placed on a finished run's patterns by their nearest issues of the run (issuerisk assign)."""

    neighbours: int = Field(15, ge=1, description="Nearest issues of the run that vote on a new issue's pattern.")
    floor_quantile: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="A new issue less similar to its nearest issue of the run than this quantile of the run's "
        "issues (to their nearest) is noise.",
    )
    floor_sample: int = Field(2000, ge=10, description="Issues of the run sampled to measure that floor.")


class WatchConfig(_Section):
    """Alerts on patterns whose newly assigned issues exceed their expected rate (issuerisk watch)."""

    min_issues: int = Field(3, ge=1, description="New issues a pattern needs before it can alert.")
    alpha: float = Field(
        0.05, gt=0, lt=1, description="Significance of the binomial excess test, Bonferroni over the patterns tested."
    )


class GitHubConfig(_Section):
    """GitHub REST API crawl; tokens come from GITHUB_TOKENS / GITHUB_TOKEN."""

    api_url: str = "https://api.github.com"
    language: str | None = "Python"
    min_stars: int = Field(100, ge=0)
    created_from: str = "2015-01-01"
    created_to: str | None = None
    per_page: int = Field(100, ge=1, le=100)
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(120.0, ge=0)
    timeout_s: float = Field(30.0, gt=0)
    raw_dir: str = Field(
        "raw/github", description="JSON Lines of raw issue objects, relative to the warehouse unless absolute."
    )
    framework_queries: dict[str, list[str]] = Field(
        default_factory=lambda: {fw: [f"{fw} in:name,description,readme", f"topic:{fw}"] for fw in FRAMEWORKS},
        description="Search queries per framework (keyword and topic); language, stars and created qualifiers are "
        "added.",
    )
    secondary_wait_s: float = Field(
        60.0,
        ge=0,
        description="Wait after a secondary rate limit that gives no Retry-After (GitHub: at least one minute).",
    )
    checkpoint_every_s: float = Field(
        30.0,
        ge=0,
        description="Seconds between checkpoint commits while crawling (each costs ~30 ms CPU; a kill refetches at "
        "most this much); 0 commits after every page.",
    )
    etag_cache_size: int = Field(
        256, ge=0, description="Response bodies kept for If-None-Match revalidation (304s cost no quota)."
    )

    @field_validator("api_url")
    @classmethod
    def _api_url_without_credentials(cls, value: str) -> str:
        return _no_credentials(value, "export the token as GITHUB_TOKENS (or GITHUB_TOKEN)")


class ServeConfig(_Section):
    """``issuerisk serve``: who may connect, and what one statement may cost (see ``issuerisk.serve``)."""

    token_file: str | None = Field(
        None,
        description="Where serve writes the Spark Connect token (mode 0600) and issuerisk sql reads it; None: "
        "$XDG_CONFIG_HOME/issuerisk/serve-<port>.token (~/.config/...). The token itself comes from "
        "ISSUERISK_SERVE_TOKEN, "
        "spark.extra['spark.connect.authenticate.token'] or a new random one.",
    )
    statement_timeout_s: float = Field(
        900.0, gt=0, description="Spark jobs running longer than this are cancelled (Connect and JDBC alike)."
    )
    max_result_size: str = Field(
        "512m",
        description="spark.driver.maxResultSize of the server: a statement whose result is larger fails instead of "
        "filling the driver.",
    )
    check_threads: int = Field(
        8, ge=1, description="Threads answering read-only checks; more requests at once are refused with 503."
    )
    check_timeout_s: float = Field(10.0, gt=0, description="Socket timeout of a read-only check request.")
    max_query_bytes: int = Field(262_144, ge=1024, description="Largest statement the read-only check accepts.")


CONNECT_TOKEN_KEY = "spark.connect.authenticate.token"
"""The one secret ``spark.extra`` may carry: Spark Connect's pre-shared token. It never reaches a JVM's command line
(the factory leaves it out of the SparkConf; `issuerisk serve` hands it to its JVM in the environment) nor the run
ledger
(:meth:`Config.to_dict` redacts it)."""
REDACTED = "<redacted>"


class Config(_Section):
    """The whole resolved configuration."""

    project: ProjectConfig
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    frameworks: FrameworkInferenceConfig = Field(default_factory=FrameworkInferenceConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    summarize: SummarizeConfig = Field(default_factory=SummarizeConfig)
    mask: MaskConfig = Field(default_factory=MaskConfig)
    kinds: KindsConfig = Field(default_factory=KindsConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    explain: ExplainConfig = Field(default_factory=ExplainConfig)
    topics: TopicsConfig = Field(default_factory=TopicsConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    trends: TrendsConfig = Field(default_factory=TrendsConfig)
    versions: VersionsConfig = Field(default_factory=VersionsConfig)
    assign: AssignConfig = Field(default_factory=AssignConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    github: GitHubConfig = Field(default_factory=GitHubConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @model_validator(mode="after")
    def _no_secrets(self) -> "Config":
        for key in _flatten(self.model_dump()):
            leaf = key.rsplit(".", 1)[-1].lower()
            if leaf in SECRET_NAMES or any(leaf.endswith("_" + word) for word in SECRET_NAMES if word != "tokens"):
                raise ValueError(
                    f"'{key}' looks like a secret; secrets come only from the environment (GITHUB_TOKENS, "
                    "OPENAI_API_KEY)"
                )
        for key in self.spark.extra:
            if key != CONNECT_TOKEN_KEY and any(
                word in key.lower() for word in ("secret", "password", "token", "access.key")
            ):
                raise ValueError(
                    f"spark.extra['{key}'] looks like a secret; give credentials through the environment (e.g. a "
                    "credentials provider), not config"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain data, without secrets (what the run ledger records)."""
        data = self.model_dump(mode="json")
        if CONNECT_TOKEN_KEY in data["spark"]["extra"]:
            data["spark"]["extra"][CONNECT_TOKEN_KEY] = REDACTED
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        """SHA-256 of the resolved configuration, recorded with every run."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def table_path(self, table: str) -> str:
        """Storage location of a table of this project's database."""
        return f"{self.project.warehouse.rstrip('/')}/{self.project.database}.db/{table}"

    def resolve_path(self, path: str) -> str:
        """A path from config: absolute or URI as given, else relative to the warehouse."""
        if "://" in path or os.path.isabs(path):
            return path
        return f"{self.project.warehouse.rstrip('/')}/{path}"

    def cache_dir(self, configured: str | None, name: str) -> str:
        """A cache folder shared by every warehouse of this user on this machine: ``configured`` (a path from
        config, see :meth:`resolve_path`), else ``$XDG_CACHE_HOME/issuerisk/<name>`` (``~/.cache/issuerisk/<name>``)."""
        if configured:
            return self.resolve_path(configured)
        return user_cache(name)

    def updated(self, section: str, **values: Any) -> "Config":
        """A copy with some keys of one section replaced (validated again)."""
        from issuerisk.conf.loader import validate

        data = self.model_dump(mode="json")
        data[section].update(values)
        return validate(data)


def literal_choices(dotted_key: str) -> tuple[Any, ...] | None:
    """The values a ``Literal`` config key allows (``cluster.backend`` -> ``("auto", "cpu", "cuml")``), else None."""
    model: Any = Config
    for part in dotted_key.split("."):
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = field.annotation
    return get_args(model) if get_origin(model) is Literal else None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "extra":
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat

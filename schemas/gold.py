"""Gold tables: one run's embeddings, clusters, topics, risk matrix, comparisons, quality, tuning and evidence (every
run's rows
kept, keyed by run_id)."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

GOLD_EMBEDDINGS = register(
    TableSpec(
        name="gold_embeddings",
        doc="Normalized float32 embedding per issue summary and model; re-embedded only when the summary changes.",
        key=("repository", "number", "model"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column("model", "string", "Embedding model (with backend, e.g. static:<model>).", nullable=False),
            Column(
                "summary_key", "string", "cache_key of the summary embedded; a new key means re-embed.", nullable=False
            ),
            Column("dim", "int", "Vector dimension.", nullable=False),
            Column("vector", "array<float>", "L2-normalized embedding.", nullable=False),
            RUN_ID,
        ),
    )
)

GOLD_CLUSTERS = register(
    TableSpec(
        name="gold_clusters",
        doc="Cluster of every issue per run (-1 is noise), with membership, outlier score and 2-D map coordinates.",
        key=("run_id", "repository", "number"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column("cluster", "int", "HDBSCAN cluster id; -1 is noise.", nullable=False),
            Column("probability", "double", "HDBSCAN membership strength in [0, 1]."),
            Column("outlier_score", "double", "GLOSH outlier score."),
            Column("x", "double", "2-D UMAP coordinate for plots."),
            Column("y", "double", "2-D UMAP coordinate for plots."),
            Column("model", "string", "Embedding model the clustering used."),
            RUN_ID,
            Column("stability", "double", "Bootstrap Jaccard stability of the issue's cluster (null for noise)."),
            Column(
                "agreement",
                "double",
                "Share of the consensus's member clusterings that put the issue with its cluster's core (null for a "
                "single run).",
            ),
        ),
    )
)

GOLD_TOPICS = register(
    TableSpec(
        name="gold_topics",
        doc="Per cluster: c-TF-IDF keywords with weights, a readable name, the most representative issues, stability "
        "and fault category.",
        key=("run_id", "cluster"),
        columns=(
            Column("cluster", "int", "Cluster id from gold_clusters.", nullable=False),
            Column("label", "string", "Short label from the top keywords."),
            Column("keywords", "array<string>", "Top keywords by c-TF-IDF (over texts with project names masked)."),
            Column("weights", "array<double>", "c-TF-IDF weight of each keyword."),
            Column("representative", "array<string>", "Links (html_url) of the most representative issues."),
            Column("n", "long", "Issues in the cluster."),
            RUN_ID,
            Column(
                "name",
                "string",
                "A readable name for the pattern (from its keywords and representative titles, or an LLM).",
            ),
            Column(
                "name_source", "string", "How the name was made: titles (a phrase its titles share), keywords, or llm."
            ),
            Column("representative_titles", "array<string>", "Titles of the representative issues."),
            Column(
                "stability",
                "double",
                "Mean best Jaccard of the cluster over the consensus's resampled clusterings (Hennig: < 0.6 dissolved, "
                ">= 0.75 stable).",
            ),
            Column(
                "category",
                "string",
                "Deep-learning fault category (Humbatova et al. 2020 plus installation and performance), or unmapped.",
            ),
            Column(
                "category_similarity",
                "double",
                "Cosine similarity of the cluster's representative centroid to the category's description.",
            ),
            Column(
                "pattern_id", "string", "Stable id of the pattern across runs (matched to the previous run's clusters)."
            ),
            Column("cohesion", "double", "Mean cosine of the cluster's issue embeddings to their centroid."),
            Column(
                "spread",
                "double",
                "1 - cohesion over the run's median cluster's: above 1, looser than the typical cluster.",
            ),
            Column(
                "generic_keywords",
                "array<string>",
                "Of the cluster's top words by c-TF-IDF (BERTopic's order, before keywords are ordered for reading), "
                "those not topics.generic_lift times as common in the cluster as in the run's other issues (they "
                "name no pattern).",
            ),
            Column("generic_share", "double", "Share of the top c-TF-IDF words that are generic."),
            Column(
                "keyword_npmi",
                "double",
                "NPMI coherence of the cluster's top c-TF-IDF words over the run's documents.",
            ),
            Column(
                "name_coverage",
                "double",
                "Share of the cluster's issues (title and embedded text) that hold its name's phrase, or one of its "
                "name's keywords.",
            ),
        ),
    )
)

GOLD_RISK = register(
    TableSpec(
        name="gold_risk",
        doc="Risk matrix per cluster and scope (all frameworks, or one): likelihood band, impact tertile, grade with "
        "its bootstrap confidence, or why the cluster is not graded.",
        key=("run_id", "scope", "cluster"),
        columns=(
            RUN_ID,
            Column("scope", "string", "all, or a framework name.", nullable=False),
            Column("cluster", "int", "Cluster id.", nullable=False),
            Column("label", "string", "Topic label."),
            Column("n", "long", "Issues of the cluster in scope.", nullable=False),
            Column(
                "p_k",
                "double",
                "n_k / N over the graded clusters' issues in scope; null for a cluster that is not graded.",
            ),
            Column("likelihood", "string", "P1..P4; null when not graded."),
            Column(
                "mttr_hours",
                "double",
                "Mean time to resolve of closed issues (the reference study's measure); null when none closed.",
            ),
            Column("median_ttr_hours", "double", "Median time to resolve of closed issues."),
            Column("open_share", "double", "Share of the cluster's issues still open."),
            Column(
                "impact", "string", "I1..I3 by tertiles of the graded clusters' impact measure; null when not graded."
            ),
            Column("grade", "string", "L1, L2, M1, M2, H1, H2, H3; null when not graded (see excluded_reason)."),
            Column("action", "string", "accept, monitor, act, block, full review."),
            Column(
                "rmst_hours",
                "double",
                "Kaplan-Meier restricted mean time to resolve up to the horizon, open issues censored at the snapshot.",
            ),
            Column(
                "impact_measure", "string", "Which measure fed the tertiles: rmst or mean_closed (risk.impact_measure)."
            ),
            Column("impact_hours", "double", "The value of that measure."),
            Column("impact_low", "double", "2.5th percentile of the impact measure over the bootstrap rounds."),
            Column("impact_high", "double", "97.5th percentile of the impact measure over the bootstrap rounds."),
            Column("p_k_low", "double", "2.5th percentile of P_k over the bootstrap rounds."),
            Column("p_k_high", "double", "97.5th percentile of P_k over the bootstrap rounds."),
            Column("grade_confidence", "double", "Share of bootstrap rounds that give the reported grade."),
            Column("grade_shares", "map<string,double>", "Share of bootstrap rounds per grade."),
            Column("snapshot_at", "timestamp", "When open issues are censored: the newest updated_at of the corpus."),
            Column(
                "defect_share",
                "double",
                "Share of the cluster's issues in scope whose kind is defect (labels, else the classifier).",
            ),
            Column(
                "label_defect_share",
                "double",
                "Defect share among the issues whose own GitHub labels give a kind (null when none do).",
            ),
            Column("kind_mix", "map<string,double>", "Share of each issue kind in the cluster, in scope."),
            Column("repositories", "long", "Repositories the cluster's issues in scope come from."),
            Column("top_repository", "string", "The repository with most of the cluster's issues in scope."),
            Column("top_repository_share", "double", "Its share of them."),
            Column("stability", "double", "The cluster's bootstrap Jaccard stability (from gold_clusters)."),
            Column(
                "excluded_reason",
                "string",
                "Why the cluster is not graded (not a defect pattern, project-specific, unstable, forced out); null "
                "when graded.",
            ),
            Column(
                "derived_from",
                "string",
                "The clustering run these grades are of, when a later `issuerisk risk` graded it again under its own "
                "run "
                "id (null: graded by the clustering run itself).",
            ),
        ),
    )
)

GOLD_FRAMEWORK_COMPARISON = register(
    TableSpec(
        name="gold_framework_comparison",
        doc="One joint clustering compared across frameworks: shares, chi-square residuals and grades side by side.",
        key=("run_id", "cluster", "framework"),
        columns=(
            RUN_ID,
            Column("cluster", "int", "Cluster id.", nullable=False),
            Column("framework", "string", "Framework.", nullable=False),
            Column("n", "long", "Issues of this framework in the cluster.", nullable=False),
            Column("share", "double", "n over the framework's clustered issues."),
            Column("expected", "double", "Expected count under independence."),
            Column("std_residual", "double", "Adjusted standardized residual; |r| > 1.96 is over/under-represented."),
            Column("grade", "string", "The cluster's grade in this framework's own risk matrix."),
            Column("chi2", "double", "Chi-square statistic of the whole table (same on every row)."),
            Column("p_value", "double", "p-value of the chi-square test (same on every row)."),
        ),
    )
)

GOLD_QUALITY = register(
    TableSpec(
        name="gold_quality",
        doc="Quality measures of each clustering run: noise share, DBCV, cluster sizes, stability, topic coherence "
        "(NPMI) and diversity.",
        key=("run_id", "measure"),
        columns=(
            RUN_ID,
            Column(
                "measure",
                "string",
                "noise_share, dbcv, clusters, size_min, size_median, size_max, stability_mean, unstable_clusters, "
                "npmi, diversity, ...",
                nullable=False,
            ),
            Column("value", "double", "The measure's value."),
            Column("detail", "string", "How it was computed, or what it is compared with."),
        ),
    )
)

GOLD_TUNING = register(
    TableSpec(
        name="gold_tuning",
        doc="Trials of `issuerisk tune`: UMAP and HDBSCAN parameters and the objective they scored.",
        key=("run_id", "trial"),
        columns=(
            RUN_ID,
            Column("trial", "int", "Optuna trial number.", nullable=False),
            Column("params", "map<string,string>", "The trial's parameters."),
            Column("objective", "double", "The objective (higher is better; null when the noise constraint failed)."),
            Column("dbcv", "double", "DBCV (relative validity) of the trial's clustering."),
            Column("stability", "double", "Mean bootstrap Jaccard stability of its clusters."),
            Column("noise_share", "double", "Share of issues left as noise."),
            Column("clusters", "int", "Clusters found."),
            Column("seconds", "double", "Wall time of the trial."),
            Column("state", "string", "complete, pruned (noise over the limit) or failed."),
        ),
    )
)

GOLD_CATEGORY_COMPARISON = register(
    TableSpec(
        name="gold_category_comparison",
        doc="Per fault category and framework: the share of the framework's graded defect issues in that category, "
        "with chi-square residuals.",
        key=("run_id", "category", "framework"),
        columns=(
            RUN_ID,
            Column(
                "category",
                "string",
                "Fault category of the graded clusters (gold_topics.category), or unmapped.",
                nullable=False,
            ),
            Column("framework", "string", "Framework.", nullable=False),
            Column("n", "long", "Issues of this framework in graded clusters of the category.", nullable=False),
            Column("share", "double", "n over the framework's issues in graded clusters."),
            Column("expected", "double", "Expected count under independence."),
            Column("std_residual", "double", "Adjusted standardized residual; |r| > 1.96 is over/under-represented."),
            Column("clusters", "long", "Graded clusters of the category."),
            Column("chi2", "double", "Chi-square statistic of the whole table (same on every row)."),
            Column("p_value", "double", "p-value of the chi-square test (same on every row)."),
        ),
    )
)

GOLD_PROFILE = register(
    TableSpec(
        name="gold_profile",
        doc="Precaution checks on the issues a run clusters: imbalance, empty bodies, labels, open share, exclusions, "
        "drift; each against its threshold.",
        key=("run_id", "check", "scope"),
        columns=(
            RUN_ID,
            Column(
                "check",
                "string",
                "top_repository_share, top10_repository_share, repository_gini, framework_share, empty_body_share, "
                "short_body_share, "
                "label_coverage, open_share, excluded_share, text_length, issues_per_quarter, embedding_mmd, "
                "centroid_shift, ...",
                nullable=False,
            ),
            Column("scope", "string", "all, or a framework.", nullable=False),
            Column("value", "double", "The measured value."),
            Column("threshold", "double", "Its threshold from profile.* (null for a check that only informs)."),
            Column(
                "direction", "string", "max: warns at or above the threshold; min: warns below it; info: never warns."
            ),
            Column("warning", "boolean", "Whether the value crossed its threshold.", nullable=False),
            Column("message", "string", "One readable sentence: the value, and why it matters when it warns."),
            Column(
                "detail_json",
                "string",
                "Distribution behind the value (repositories, quantiles, quarters, periods, p-value) as JSON.",
            ),
        ),
    )
)

GOLD_EXPLANATIONS = register(
    TableSpec(
        name="gold_explanations",
        doc="Why an issue sits in its cluster: per sentence and salient word of its embedded text, the similarity to "
        "the cluster centroid it carries, "
        "by occlusion (remove and re-embed) and by integrated gradients through the encoder.",
        key=("run_id", "repository", "number", "unit", "position"),
        columns=(
            RUN_ID,
            REPOSITORY,
            NUMBER,
            Column("cluster", "int", "The issue's cluster in gold_clusters.", nullable=False),
            Column("unit", "string", "sentence or token.", nullable=False),
            Column("position", "int", "Order of the unit in the text.", nullable=False),
            Column("start", "int", "Character offset of the unit in the embedded text."),
            Column("end", "int", "End character offset (exclusive)."),
            Column("text", "string", "The sentence or word."),
            Column(
                "perturbation",
                "double",
                "Similarity lost when the unit is removed and the text re-embedded (null: a word not occluded).",
            ),
            Column(
                "gradient",
                "double",
                "Integrated-gradients attribution of the similarity to the unit's tokens (summed).",
            ),
            Column("truncated", "boolean", "The unit lies past the encoder's token limit, so it could not count."),
            Column("similarity", "double", "Cosine similarity of the whole text to the cluster centroid."),
            Column(
                "agreement",
                "double",
                "Spearman correlation of the two methods over the issue's sentences (null under 3 sentences).",
            ),
            Column(
                "completeness_gap",
                "double",
                "|sum of attributions - (f(text) - f(baseline))|: how far integrated gradients is from exact.",
            ),
            Column("seconds", "double", "Time to explain the issue on this machine."),
        ),
    )
)


GOLD_TRENDS = register(
    TableSpec(
        name="gold_trends",
        doc="Per cluster, scope and calendar quarter: the pattern's issues and share, with the trend of its share "
        "(Mann-Kendall) and whether it is emerging, growing, steady or fading (the same on every row of a series).",
        key=("run_id", "framework", "cluster", "period"),
        columns=(
            RUN_ID,
            Column("framework", "string", "all, or a framework name.", nullable=False),
            Column("cluster", "int", "Cluster id.", nullable=False),
            Column("pattern_id", "string", "Stable id of the pattern across runs (gold_topics)."),
            Column("period", "string", "Calendar quarter of creation, e.g. 2021Q3.", nullable=False),
            Column("n", "long", "The pattern's issues created in the quarter.", nullable=False),
            Column("total", "long", "The scope's clustered issues created in the quarter (noise included)."),
            Column("share", "double", "n over total: the pattern's share of the quarter's issues."),
            Column("tau", "double", "Kendall's tau of share against quarter (null: too few issues to test)."),
            Column("p_value", "double", "Two-sided p-value of the Mann-Kendall test."),
            Column("recent_share", "double", "Share of the pattern's issues created in the scope's last quarters."),
            Column(
                "status",
                "string",
                "emerging, growing, steady, fading, or too few (below trends.min_issues or trends.min_periods).",
                nullable=False,
            ),
        ),
    )
)


GOLD_VERSION_RISK = register(
    TableSpec(
        name="gold_version_risk",
        doc="Per framework version (silver_issue_versions) and graded pattern: the pattern's share of the clustered "
        "issues that report the version, its 95% Wilson interval and the adjusted residual of the version x pattern "
        "table (over-represented when above versions.residual).",
        key=("run_id", "framework", "version", "cluster"),
        columns=(
            RUN_ID,
            Column("framework", "string", "pytorch, tensorflow or keras.", nullable=False),
            Column("version", "string", "major.minor, or a major as 2.x (all its minors).", nullable=False),
            Column("cluster", "int", "Cluster id.", nullable=False),
            Column("pattern_id", "string", "Stable id of the pattern across runs (gold_topics)."),
            Column("n", "long", "The pattern's issues reporting the version.", nullable=False),
            Column("version_n", "long", "Clustered issues (noise included) reporting the version.", nullable=False),
            Column("share", "double", "n over version_n."),
            Column("share_low", "double", "Lower end of the 95% Wilson interval of share."),
            Column("share_high", "double", "Upper end of the 95% Wilson interval of share."),
            Column("expected", "double", "Expected n if versions and patterns were independent."),
            Column("residual", "double", "Adjusted standardized residual (approximately standard normal)."),
            Column(
                "over_represented",
                "boolean",
                "residual above versions.residual, with versions.min_pattern_issues issues at least.",
                nullable=False,
            ),
        ),
    )
)


GOLD_ASSIGNMENTS = register(
    TableSpec(
        name="gold_assignments",
        doc="Issues a clustering run did not cluster (arrived later, or outside its sample), placed on its patterns by "
        "their nearest issues of the run (issuerisk assign), or noise with the reason; the run's own rows unchanged.",
        key=("run_id", "repository", "number"),
        columns=(
            REPOSITORY,
            NUMBER,
            Column("run_id", "string", "The clustering run whose patterns the issue was placed on.", nullable=False),
            Column("pattern_id", "string", "Stable id of the pattern (gold_topics); null for noise."),
            Column("cluster", "int", "The run's cluster id; -1 is noise.", nullable=False),
            Column(
                "vote_share", "double", "Similarity-weighted share of its nearest issues of the run in that cluster."
            ),
            Column("similarity", "double", "Mean cosine similarity to its nearest issues in that cluster."),
            Column("nearest_similarity", "double", "Cosine similarity to its nearest issue of the run."),
            Column("reason", "string", "Why it is noise; null when placed on a pattern."),
            Column("model", "string", "Embedding model of the vectors (the run's).", nullable=False),
            Column("assigned_by", "string", "The command's run id (see the runs table).", nullable=False),
            Column("assigned_at", "timestamp", "When it was placed (UTC).", nullable=False),
        ),
    )
)


GOLD_ALERTS = register(
    TableSpec(
        name="gold_alerts",
        doc="Each issuerisk watch: per pattern with newly assigned issues, how many came against how many its recent "
        "share predicts, the binomial p-value and whether it alerted, with the new issues' links (a log: one row "
        "per watch and pattern).",
        key=("alerted_by", "cluster"),
        columns=(
            Column("alerted_by", "string", "The watch command's run id (see the runs table).", nullable=False),
            Column("run_id", "string", "The clustering run whose patterns were watched.", nullable=False),
            Column("window", "string", "The --since date, or all.", nullable=False),
            Column("cluster", "int", "Cluster id.", nullable=False),
            Column("pattern_id", "string", "Stable id of the pattern (gold_topics)."),
            Column("label", "string", "The pattern's label."),
            Column("grade", "string", "Its grade (all frameworks); null when not graded."),
            Column("new_issues", "long", "New issues placed on it.", nullable=False),
            Column("all_new_issues", "long", "New issues of the window, noise included.", nullable=False),
            Column("expected", "double", "New issues its share of the run's recent quarters predicts."),
            Column("p_value", "double", "One-sided binomial p-value of at least that many."),
            Column(
                "alert",
                "boolean",
                "Fired: watch.min_issues reached and p below watch.alpha / patterns tested.",
                nullable=False,
            ),
            Column("links", "array<string>", "The new issues' links."),
            Column("alerted_at", "timestamp", "When the watch ran (UTC).", nullable=False),
        ),
    )
)

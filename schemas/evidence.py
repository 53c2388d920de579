"""Gold tables of the evidence a reviewer reads beside the grades: the data profile before clustering and the
per-issue explanations (every run's rows kept)."""

from __future__ import annotations

from issuerisk.schemas.base import NUMBER, REPOSITORY, RUN_ID, Column, TableSpec, register

GOLD_PROFILE = register(TableSpec(
    name="gold_profile",
    doc="Precaution checks on the issues a run clusters: imbalance, empty bodies, labels, open share, exclusions, drift; each against its threshold.",
    key=("run_id", "check", "scope"),
    columns=(
        RUN_ID,
        Column("check", "string", "top_repository_share, top10_repository_share, repository_gini, framework_share, empty_body_share, short_body_share, "
                                  "label_coverage, open_share, excluded_share, text_length, issues_per_quarter, embedding_mmd, centroid_shift, ...", nullable=False),
        Column("scope", "string", "all, or a framework.", nullable=False),
        Column("value", "double", "The measured value."),
        Column("threshold", "double", "Its threshold from profile.* (null for a check that only informs)."),
        Column("direction", "string", "max: warns at or above the threshold; min: warns below it; info: never warns."),
        Column("warning", "boolean", "Whether the value crossed its threshold.", nullable=False),
        Column("message", "string", "One readable sentence: the value, and why it matters when it warns."),
        Column("detail_json", "string", "Distribution behind the value (repositories, quantiles, quarters, periods, p-value) as JSON."),
    ),
))

GOLD_EXPLANATIONS = register(TableSpec(
    name="gold_explanations",
    doc="Why an issue sits in its cluster: per sentence and salient word of its embedded text, the similarity to the cluster centroid it carries, "
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
        Column("perturbation", "double", "Similarity lost when the unit is removed and the text re-embedded (null: a word not occluded)."),
        Column("gradient", "double", "Integrated-gradients attribution of the similarity to the unit's tokens (summed)."),
        Column("truncated", "boolean", "The unit lies past the encoder's token limit, so it could not count."),
        Column("similarity", "double", "Cosine similarity of the whole text to the cluster centroid."),
        Column("agreement", "double", "Spearman correlation of the two methods over the issue's sentences (null under 3 sentences)."),
        Column("completeness_gap", "double", "|sum of attributions - (f(text) - f(baseline))|: how far integrated gradients is from exact."),
        Column("seconds", "double", "Time to explain the issue on this machine."),
    ),
))

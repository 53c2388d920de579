"""The runs ledger: one row per command, the base for replay."""

from __future__ import annotations

from issuerisk.schemas.base import RUN_ID, Column, TableSpec, register

RUNS = register(
    TableSpec(
        name="runs",
        doc="One row per command: what ran, with which config, code, packages and table versions; the base for replay.",
        key=("run_id",),
        columns=(
            RUN_ID,
            Column("command", "string", "CLI command (ingest, filter, run, ...).", nullable=False),
            Column("args_json", "string", "Command-line arguments as JSON."),
            Column(
                "status",
                "string",
                "running, succeeded, failed, or abandoned (its process was killed; found by a later command).",
                nullable=False,
            ),
            Column("error", "string", "Error message when failed."),
            Column("config_json", "string", "Full resolved configuration (no secrets)."),
            Column("config_hash", "string", "SHA-256 of config_json."),
            Column("git_commit", "string", "Commit of the code that ran (dirty marked with +)."),
            Column("packages", "map<string,string>", "Versions of the pinned packages."),
            Column("runtime", "map<string,string>", "Python, Java, Spark, Delta and Ray versions, host."),
            Column("seeds", "map<string,long>", "Seeds used (project, UMAP...)."),
            Column("tables_read", "map<string,long>", "Delta version of each table read."),
            Column("tables_written", "map<string,long>", "Delta version of each table after writing."),
            Column("metrics_json", "string", "Counts and timings of the stages (JSON)."),
            Column("started_at", "timestamp", "Start (UTC).", nullable=False),
            Column("ended_at", "timestamp", "End (UTC)."),
        ),
    )
)

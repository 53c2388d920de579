"""Spark jobs (installed as ``issuerisk.jobs``): ingest, filter, summarize."""

"""Every table's schema, declared once. Importing this package fills :data:`TABLES`."""

from issuerisk.schemas import crawl, evidence, lakehouse, ml, risk, summaries  # noqa: F401  (registers the tables)
from issuerisk.schemas.base import TABLES, Column, TableSpec

__all__ = ["TABLES", "Column", "TableSpec"]

"""Every table's schema, declared once, in one module per tier (bronze, silver, gold, ledger). Importing this package
fills :data:`TABLES`."""

from issuerisk.schemas import bronze, gold, ledger, silver  # noqa: F401  (registers the tables)
from issuerisk.schemas.base import TABLES, Column, TableSpec

__all__ = ["TABLES", "Column", "TableSpec"]

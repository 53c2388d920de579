"""Declare a table once: columns with types and one-line meanings, giving Spark and Arrow schemas.

Every table of the project is a :class:`TableSpec` registered in :data:`TABLES`;
jobs read and write with ``spec.spark`` (never ``inferSchema``), Ray code with
``spec.arrow``, and the catalog is created from the same specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
from pyspark.sql import types as T


@dataclass(frozen=True)
class Column:
    """One column: name, type name (see :data:`_TYPES`), nullability and meaning."""

    name: str
    type: str
    doc: str
    nullable: bool = True


_TYPES: dict[str, tuple[T.DataType, pa.DataType]] = {
    "string": (T.StringType(), pa.string()),
    "long": (T.LongType(), pa.int64()),
    "int": (T.IntegerType(), pa.int32()),
    "double": (T.DoubleType(), pa.float64()),
    "float": (T.FloatType(), pa.float32()),
    "boolean": (T.BooleanType(), pa.bool_()),
    "timestamp": (T.TimestampType(), pa.timestamp("us", tz="UTC")),
    "array<string>": (T.ArrayType(T.StringType()), pa.list_(pa.string())),
    "array<float>": (T.ArrayType(T.FloatType()), pa.list_(pa.float32())),
    "array<double>": (T.ArrayType(T.DoubleType()), pa.list_(pa.float64())),
    "map<string,long>": (T.MapType(T.StringType(), T.LongType()), pa.map_(pa.string(), pa.int64())),
    "map<string,string>": (T.MapType(T.StringType(), T.StringType()), pa.map_(pa.string(), pa.string())),
    "map<string,double>": (T.MapType(T.StringType(), T.DoubleType()), pa.map_(pa.string(), pa.float64())),
}


@dataclass(frozen=True)
class TableSpec:
    """A Delta table of the project: its name, meaning, columns and merge key."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partition_by: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        unknown = [c.type for c in self.columns if c.type not in _TYPES]
        if unknown:
            raise ValueError(f"table {self.name}: unknown column types {unknown}; use one of {sorted(_TYPES)}")
        missing = [k for k in (*self.key, *self.partition_by) if k not in names]
        if missing:
            raise ValueError(f"table {self.name}: key/partition columns {missing} are not columns")

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def spark(self) -> T.StructType:
        return T.StructType(
            [T.StructField(c.name, _TYPES[c.type][0], c.nullable, {"comment": c.doc}) for c in self.columns]
        )

    @property
    def arrow(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, _TYPES[c.type][1], c.nullable) for c in self.columns])

    def ddl(self) -> str:
        """Column list for ``CREATE TABLE`` with comments."""
        parts = []
        for c in self.columns:
            comment = c.doc.replace("'", "\\'")
            null = "" if c.nullable else " NOT NULL"
            parts.append(f"`{c.name}` {_TYPES[c.type][0].simpleString()}{null} COMMENT '{comment}'")
        return ",\n  ".join(parts)


TABLES: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
    """Add a table to the registry (names are unique)."""
    if spec.name in TABLES and TABLES[spec.name] != spec:
        raise ValueError(f"table {spec.name} is declared twice")
    TABLES[spec.name] = spec
    return spec


# Columns every table shares: the issue key and the run that wrote the row.
REPOSITORY = Column("repository", "string", "GitHub repository as owner/name.", nullable=False)
NUMBER = Column("number", "long", "Issue number within the repository.", nullable=False)
RUN_ID = Column("run_id", "string", "Run that wrote this row (see the runs table).", nullable=False)

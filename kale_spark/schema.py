"""Table names, column names and StructTypes of every table in the lake.

One place defines them; stages and tests import from here. Each table is defined once,
as a Spark StructType; its Arrow schema (pandas UDF output, exports) is derived from it
with :func:`arrow_schema`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DataType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

if TYPE_CHECKING:
    import pyarrow as pa

# Table names (Delta folders under lake.root, tables under the `kale` database).
SAMPLES = "samples"
QUARANTINE = "quarantine"
RUNS = "runs"
IMAGES = "images"
DENSE_CAPTIONS = "dense_captions"
STAGE1_CAPTIONS = "stage1_captions"

UID = "uid"

# DataComp metadata columns we carry (the parquet has more; they are ignored).
DATACOMP_COLUMNS = (
    "uid",
    "url",
    "text",
    "original_width",
    "original_height",
    "sha256",
    "clip_b32_similarity_score",
    "clip_l14_similarity_score",
    "face_bboxes",
)

FACE_BBOXES_TYPE = ArrayType(ArrayType(DoubleType()))

SAMPLES_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("url", StringType(), False),
        StructField("text", StringType(), False),
        StructField("original_width", IntegerType(), True),
        StructField("original_height", IntegerType(), True),
        StructField("sha256", StringType(), True),
        StructField("clip_b32_similarity_score", DoubleType(), True),
        StructField("clip_l14_similarity_score", DoubleType(), True),
        StructField("face_bboxes", FACE_BBOXES_TYPE, True),
        StructField("source_file", StringType(), False),
        StructField("ingested_at", TimestampType(), False),
        StructField("run_id", StringType(), False),
    ]
)

# A quarantined input row: the raw values as text (they failed to parse), why, and where
# it came from. Keyed by (source_file, source_row) so a rerun adds no duplicates.
QUARANTINE_SCHEMA = StructType(
    [
        StructField("stage", StringType(), False),
        StructField("source_file", StringType(), False),
        StructField("source_row", LongType(), False),
        StructField("uid", StringType(), True),
        StructField("reason", StringType(), False),
        StructField("raw", MapType(StringType(), StringType()), True),
        StructField("quarantined_at", TimestampType(), False),
        StructField("run_id", StringType(), False),
    ]
)
QUARANTINE_KEY = ("stage", "source_file", "source_row")

RUNS_SCHEMA = StructType(
    [
        StructField("run_id", StringType(), False),
        StructField("stage", StringType(), False),
        StructField("status", StringType(), False),
        StructField("started_at", TimestampType(), False),
        StructField("finished_at", TimestampType(), False),
        StructField("duration_s", DoubleType(), False),
        StructField("config_hash", StringType(), False),
        StructField("input_versions", MapType(StringType(), LongType()), True),
        StructField("output_versions", MapType(StringType(), LongType()), True),
        StructField("counts", MapType(StringType(), LongType()), True),
        StructField("error", StringType(), True),
        StructField("kale_version", StringType(), False),
        # Non-integer figures: rows/s, elapsed seconds, losses (progress.py, training).
        StructField("metrics", MapType(StringType(), DoubleType()), True),
    ]
)


def require_columns(columns: Iterable[str], needed: Sequence[str], where: str) -> None:
    """Check a declared input contract: ``ValueError`` naming the columns ``needed`` that
    ``columns`` lack (a stage's batch function, a model's input frame)."""
    have = set(columns)
    missing = [c for c in needed if c not in have]
    if missing:
        raise ValueError(f"{where} lacks columns {missing}")


# Reasons rows go to quarantine: plain strings in kale_spark/reasons.py (no pyspark,
# so the model path can run without Spark), re-exported here.
from kale_spark.reasons import *  # noqa: E402, F403

# The fetch stage's output, one row per samples uid (kale_spark/fetch/rows.py fills it).
IMAGES_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("status", StringType(), False),
        StructField("error", StringType(), True),
        StructField("http_status", IntegerType(), True),
        StructField("attempts", IntegerType(), False),
        StructField("original_width", IntegerType(), True),
        StructField("original_height", IntegerType(), True),
        StructField("width", IntegerType(), True),
        StructField("height", IntegerType(), True),
        StructField("mime", StringType(), True),
        StructField("sha256", StringType(), True),
        StructField("sha256_match", BooleanType(), True),
        StructField("image", BinaryType(), True),
        StructField("source", StringType(), True),
        StructField("fetched_at", TimestampType(), True),
        StructField("run_id", StringType(), False),
        # The sample's alt-text, carried so that the model stages never join `samples`
        # per chunk (null in rows fetched before it was carried).
        StructField("alt_text", StringType(), True),
    ]
)
IMAGE_OK = "ok"

# Lineage every generated row carries (see models/spec.py ModelSpec.lineage()).
LINEAGE_FIELDS = [
    StructField("model", StringType(), False),
    StructField("model_revision", StringType(), False),
    StructField("prompt_id", StringType(), False),
    StructField("gen_params", StringType(), False),  # canonical JSON of GenerationParams
    StructField("source_versions", MapType(StringType(), LongType()), True),
    StructField("run_id", StringType(), False),
    StructField("created_at", TimestampType(), False),
]
# A rerun generates only what is missing for this model, revision and prompt.
GENERATED_KEY = ("uid", "model", "model_revision", "prompt_id")

DENSE_CAPTIONS_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("dense_caption", StringType(), False),
        StructField("prompt_tokens", IntegerType(), False),
        StructField("new_tokens", IntegerType(), False),
        *LINEAGE_FIELDS,
        # The image's alt-text (from `images`), for augment; null in older rows.
        StructField("alt_text", StringType(), True),
    ]
)

STAGE1_CAPTIONS_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("alt_text", StringType(), False),
        StructField("dense_caption", StringType(), False),
        StructField("dense_model", StringType(), False),
        StructField("dense_prompt_id", StringType(), False),
        StructField("caption_raw", StringType(), False),
        StructField("prompt_tokens", IntegerType(), False),
        StructField("new_tokens", IntegerType(), False),
        *LINEAGE_FIELDS,
    ]
)

# The student's captions (kale_spark/stages/student_caption.py): the stage-1 columns,
# but there is no dense caption, so `dense_caption`, `dense_model` and
# `dense_prompt_id` are null. `model` is the student checkpoint's path and
# `model_revision` its content hash ("sha256:...").
STAGE2_CAPTIONS = "stage2_captions"
_DENSE_NULLABLE = {"dense_caption", "dense_model", "dense_prompt_id"}
STAGE2_CAPTIONS_SCHEMA = StructType(
    [
        StructField(f.name, f.dataType, f.nullable or f.name in _DENSE_NULLABLE)
        for f in STAGE1_CAPTIONS_SCHEMA.fields
    ]
)


# ======================================================================================
# filter / publish (kale_spark/stages/filter.py, kale_spark/stages/publish.py)
# ======================================================================================

FILTERED_CAPTIONS = "filtered_captions"
KALE = "kale"
RELEASES = "releases"

# Values of the `stage` column: which caption table a row came from.
CAPTION_STAGES = {"stage1": STAGE1_CAPTIONS, "stage2": STAGE2_CAPTIONS}

# A rerun of filter processes only captions it has not seen under this key.
FILTERED_KEY = ("uid", "stage", "model", "model_revision", "prompt_id")

# Why filter rejects a caption (stable strings; null when the caption is kept).
REJECT_EMPTY = "empty_after_cleaning"
REJECT_TOO_SHORT = "too_short"

# Values of `novel_share_basis`: the texts a caption's words are checked against.
BASIS_ALT_AND_DENSE = "alt_text+dense_caption"
BASIS_ALT_ONLY = "alt_text"

FILTERED_CAPTIONS_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("stage", StringType(), False),
        StructField("alt_text", StringType(), False),
        StructField("dense_caption", StringType(), True),
        StructField("dense_model", StringType(), True),
        StructField("caption_raw", StringType(), False),
        StructField("caption", StringType(), False),
        StructField("removed_sentences", ArrayType(StringType(), False), False),
        StructField("removal_reasons", ArrayType(StringType(), False), False),
        StructField("rejected", BooleanType(), False),
        StructField("reject_reason", StringType(), True),
        StructField("word_count", IntegerType(), False),
        StructField("knowledge_retention", DoubleType(), True),
        StructField("novel_share", DoubleType(), False),
        # What novel_share compares with: alt_text+dense_caption (stage 1) or alt_text.
        StructField("novel_share_basis", StringType(), True),
        # The caption carries on an instruction its alt-text smuggled into the prompt
        # (curation/injection.py); null on rows filtered before the column existed.
        StructField("injection_suspect", BooleanType(), True),
        StructField("model", StringType(), False),
        StructField("model_revision", StringType(), False),
        StructField("prompt_id", StringType(), False),
        StructField("gen_params", StringType(), False),
        # The caption row's own run (augment / student-caption) and the versions it read.
        StructField("caption_run_id", StringType(), False),
        StructField("source_versions", MapType(StringType(), LongType()), True),
        StructField("run_id", StringType(), False),
        StructField("created_at", TimestampType(), False),
    ]
)

# The gold table: one row per uid. Every column is a plain type (string, int, double,
# array<string>) so exports load in any Parquet reader as they are.
KALE_SCHEMA = StructType(
    [
        StructField("uid", StringType(), False),
        StructField("url", StringType(), False),
        StructField("alt_text", StringType(), False),
        StructField("dense_caption", StringType(), True),
        StructField("caption", StringType(), False),
        StructField("stage", StringType(), False),
        StructField("model", StringType(), False),
        StructField("model_revision", StringType(), False),
        StructField("prompt_id", StringType(), False),
        StructField("gen_params", StringType(), False),
        StructField("dense_model", StringType(), True),
        StructField("word_count", IntegerType(), False),
        StructField("knowledge_retention", DoubleType(), True),
        StructField("novel_share", DoubleType(), False),
        # What novel_share compares with: alt_text+dense_caption (stage 1) or alt_text.
        StructField("novel_share_basis", StringType(), True),
        StructField("removed_sentences", ArrayType(StringType(), False), False),
        StructField("caption_run_id", StringType(), False),
        StructField("filter_run_id", StringType(), False),
    ]
)
KALE_KEY = ("uid",)

# One row per published release of `kale`: `version` is the kale table version that
# holds it (query it with VERSION AS OF, re-export it with `kale export --version`).
RELEASES_SCHEMA = StructType(
    [
        StructField("release", IntegerType(), False),
        StructField("version", LongType(), False),
        StructField("published_at", TimestampType(), False),
        StructField("rows", LongType(), False),
        StructField("rows_added", LongType(), False),
        StructField("rows_updated", LongType(), False),
        StructField("rows_removed", LongType(), False),
        StructField("source_versions", MapType(StringType(), LongType()), True),
        StructField("config_hash", StringType(), False),
        StructField("run_id", StringType(), False),
        StructField("export_path", StringType(), True),
    ]
)


# ======================================================================================
# Arrow
# ======================================================================================


def arrow_type(dtype: DataType) -> pa.DataType:
    """The Arrow type of a Spark type, as Spark's own Arrow conversion writes it
    (timestamps in microseconds, UTC)."""
    import pyarrow as pa

    simple = {
        StringType: pa.string,
        IntegerType: pa.int32,
        LongType: pa.int64,
        DoubleType: pa.float64,
        FloatType: pa.float32,
        BooleanType: pa.bool_,
        BinaryType: pa.binary,
    }
    for spark_type, make in simple.items():
        if isinstance(dtype, spark_type):
            return make()
    if isinstance(dtype, TimestampType):
        return pa.timestamp("us", tz="UTC")
    if isinstance(dtype, ArrayType):
        return pa.list_(arrow_type(dtype.elementType))
    if isinstance(dtype, MapType):
        return pa.map_(arrow_type(dtype.keyType), arrow_type(dtype.valueType))
    if isinstance(dtype, StructType):
        return pa.struct(arrow_schema(dtype))
    raise TypeError(f"no Arrow type for Spark type {dtype}")


def arrow_schema(struct: StructType) -> pa.Schema:
    """The Arrow schema of a table's StructType: same names, order and nullability."""
    import pyarrow as pa

    return pa.schema(
        [pa.field(f.name, arrow_type(f.dataType), nullable=f.nullable) for f in struct.fields]
    )

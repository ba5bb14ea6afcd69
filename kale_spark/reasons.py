"""Why a row went to quarantine: stable strings that users query (`quarantine.reason`).

Plain constants with no Spark import, so the model path (models/inference.py) runs
where pyspark is not installed; schema.py re-exports them.
"""

# Reasons a row goes to quarantine at ingest (stable strings, queried by users).
REASON_MISSING_UID = "missing_uid"
REASON_BAD_UID = "bad_uid"
REASON_MISSING_URL = "missing_url"
REASON_BAD_URL = "bad_url"
REASON_EMPTY_TEXT = "empty_text"
REASON_TEXT_TOO_LONG = "text_too_long"
REASON_BAD_WIDTH = "bad_original_width"
REASON_BAD_HEIGHT = "bad_original_height"
REASON_BAD_SHA256 = "bad_sha256"
REASON_BAD_SCORE = "bad_similarity_score"
REASON_BAD_FACE_BBOXES = "bad_face_bboxes"
REASON_DUPLICATE_UID = "duplicate_uid_in_input"
REASON_UNREADABLE_FILE = (
    "unreadable_file"  # an input file, not a row: truncated, empty, not parquet
)

# Reasons a row goes to quarantine at the model stages (caption, augment).
REASON_GENERATION_ERROR = "generation_error"  # the model call raised on this row
REASON_EMPTY_OUTPUT = "empty_output"  # the model generated no text
REASON_MISSING_INPUT = "missing_input"  # no image bytes / no dense caption to work from
REASON_PREPARE_ERROR = "prepare_error"  # the image did not decode or the processor refused it

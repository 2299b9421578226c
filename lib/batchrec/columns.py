"""Column names shared by every module: Personalize's dataset columns and batchrec's output columns.

IDs are strings at every boundary; the integer indexes (``USER_IDX``/``ITEM_IDX``) are internal.
"""

# Personalize dataset columns (CSV headers are matched case-insensitively and upper-cased on read).
USER_ID = "USER_ID"
ITEM_ID = "ITEM_ID"
TIMESTAMP = "TIMESTAMP"
EVENT_TYPE = "EVENT_TYPE"
EVENT_VALUE = "EVENT_VALUE"
IMPRESSION = "IMPRESSION"
CREATION_TIMESTAMP = "CREATION_TIMESTAMP"

# Internal columns.
USER_IDX = "user_idx"
ITEM_IDX = "item_idx"
CONFIDENCE = "confidence"
NEIGHBOUR_ID = "NEIGHBOUR_ID"  # item_neighbours artifact: a related item of ITEM_ID
SOURCE_FILE = "_source_file"

# Output tables (Delta) of the batch jobs.
OUT_RUN_DATE = "run_date"
OUT_SOLUTION = "solution"
OUT_SOLUTION_VERSION = "solution_version"
OUT_RECIPE = "recipe"
OUT_USER_ID = "user_id"
OUT_ITEM_ID = "item_id"
OUT_RANK = "rank"
OUT_SCORE = "score"
OUT_REASON = "reason"
RELATED_ITEM_ID = "RELATED_ITEM_ID"  # related-items output: an item related to ITEM_ID

# Reasons attached to each recommended item.
REASON_MODEL = "model"
REASON_POPULAR = "popular"
REASON_EXPLORATION = "exploration"
REASON_TRENDING = "trending"
REASON_UNSCORED = "unscored"

"""A hand-made catalogue, users and interactions for the filter tests (shared by the parse tests,
which only need the field names, and the Spark tests).

Items i1..i7 have attributes; i8 appears only in the interactions. Users u1..u5 have attributes; u6
appears only in the interactions. Event types vary in case on purpose.
"""

from __future__ import annotations

ITEM_COLUMNS = (
    "ITEM_ID string, GENRE string, CATEGORY string, DESCRIPTION string, CATEGORY_L1 string, "
    "CATEGORY_L2 string, PRICE double, CREATION_TIMESTAMP long, NUMBER_OF_DOWNLOADS string, "
    "OWNER string, AVAILABLE string, OUT_OF_STOCK string, PUBLISHED_DATE int, IS_NEW boolean")
ITEMS = [
    # ITEM_ID GENRE            CATEGORY    DESCR.    L1          L2        PRICE  CREATED     DOWNL. OWNER       AVAIL.  OOS    PUBLISHED  NEW
    ("i1", "Comedy|Drama", "shoe", "boot", "shoe", "boot", 10.0, 1600000000, "5", "in-house", "True", "no", 20210901, True),
    ("i2", "Comedy", "shoe", "sandal", "shoe", "sandal", 25.0, 1610000000, "50", "partner", "False", "yes", 20211015, False),
    ("i3", "Horror", "watch", "luxury", "watch", "luxury", 500.0, 1620000000, "15", "in-house", "True", "no", None, False),
    ("i4", "Drama", "watch", "sport", "watch", "sport", 80.0, 1630000000, "100", "partner", "True", None, None, True),
    ("i5", "Horror|Thriller", "clothing", None, "clothing", None, 40.0, 1640000000, "19", "in-house", "True", "no", None, False),
    ("i6", None, "clothing", "basic", "clothing", "basic", None, 1650000000, None, None, "False", "no", None, False),
    ("i7", "drama", "shoe", None, "shoe", None, 15.0, 1660000000, "20", "partner", "True", "no", None, True),
]
USER_COLUMNS = "USER_ID string, AGE int, MEMBERSHIP_STATUS string, TIER string"
USERS = [
    ("u1", 15, "gold", "bronze"),
    ("u2", 25, "silver", "gold"),
    ("u3", 40, "gold", "silver"),
    ("u4", 18, None, "bronze"),
    ("u5", 30, "bronze", None),
]
INTERACTION_COLUMNS = "USER_ID string, ITEM_ID string, EVENT_TYPE string, TIMESTAMP long"
INTERACTIONS = [
    ("u1", "i1", "click", 10), ("u1", "i2", "Stream", 11), ("u1", "i3", "purchase", 12),
    ("u2", "i4", "CLICK", 10), ("u2", "i5", "favorite", 11), ("u2", "i1", "rating", 12),
    ("u3", "i2", "purchased", 10), ("u3", "i6", "click", 11),
    ("u4", "i7", "view", 10), ("u4", "i6", "Watched", 11),
    ("u5", "i3", "click", 10), ("u5", "i3", "stream", 11),
    ("u6", "i8", "click", 10),
]

ALL_ITEMS = frozenset(f"i{i}" for i in range(1, 9))
ALL_USERS = frozenset(f"u{i}" for i in range(1, 7))


def _classes(columns: str) -> dict[str, str]:
    out = {}
    for part in columns.split(","):
        name, kind = part.split()
        out[name] = {"string": "string", "boolean": "boolean"}.get(kind, "number")
    return out


# {kind: {FIELD: field class}}, as batchrec.filters.check.fields_of_dataframe gives for the frames.
FIELDS = {"items": _classes(ITEM_COLUMNS), "users": _classes(USER_COLUMNS),
          "interactions": _classes(INTERACTION_COLUMNS)}

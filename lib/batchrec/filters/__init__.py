"""Amazon Personalize's filter expression language: parse, check, compile to Spark eligibility.

Pure Python (no Spark needed)::

    from batchrec.filters import parse_filter, check_filter, parse_filter_values, plan_values
    filt = check_filter(parse_filter('EXCLUDE ItemID WHERE Items.GENRE IN ($GENRE)'), RECOMMEND, fields)

With Spark (imported on first use, so that parsing never starts a JVM)::

    from batchrec.filters.compile import compile_filter
    eligibility = compile_filter(spark, expression, values, datasets, requests, key=USER_ID)

Modules: ``lexer``/``parser`` (text -> ``nodes``), ``check`` (datasets, fields, job context, limits),
``values`` (``filterValues``), ``predicates``/``compile`` (Spark Columns -> ``eligibility``).
"""

from batchrec.filters.check import (ATTRIBUTE_SEGMENT, ITEM_SEGMENT, RANK, RECOMMEND, RELATED,
                                    FilterContext, check_filter, fields_of_dataframe, fields_of_schema)
from batchrec.filters.eligibility import Eligibility
from batchrec.filters.errors import FilterError
from batchrec.filters.parser import parse_filter
from batchrec.filters.settings import FilterSettings
from batchrec.filters.values import parse_filter_values, plan_values, split_values

__all__ = [
    "ATTRIBUTE_SEGMENT", "ITEM_SEGMENT", "RANK", "RECOMMEND", "RELATED", "Eligibility", "FilterContext",
    "FilterError", "FilterSettings", "check_filter", "compile_filter", "fields_of_dataframe",
    "fields_of_schema", "parse_filter", "parse_filter_values", "plan_values", "split_values",
]


def compile_filter(*args, **kwargs):
    """:func:`batchrec.filters.compile.compile_filter` (imports pyspark on first call)."""
    from batchrec.filters.compile import compile_filter as compile_

    return compile_(*args, **kwargs)

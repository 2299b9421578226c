"""Compile a filter expression for one batch job into an :class:`Eligibility` (Spark, lazily).

How each expression is evaluated:

* **Items / Users conditions** (the WHERE's dataset holds the attributes of what is returned) are
  evaluated over the candidates joined with that dataset. Without placeholders taking per-line
  values and without ``CurrentItem``, the result is one request-independent set: folded into
  ``allowed``/``denied`` when the expression applies to every request, else a set with membership.
  With them, there is one set per distinct *binding* (the request's placeholder values and query
  item fields), computed from the distinct bindings x candidates, never from requests x candidates.
* **IF CurrentUser conditions** decide, per request, whether the expression applies at all
  (requests joined with the users dataset): membership rows, no per-user item lists.
* **Interactions conditions** (ItemID): each requesting user's latest N interactions per event type
  (``FilterSettings.interactions_per_event_type``); an item qualifies when the WHERE holds with
  each condition read as "the user has such an interaction with the item" (so
  ``EVENT_TYPE IN ("click") AND EVENT_TYPE IN ("purchase")`` means clicked and purchased).
  Result: per-request pairs, bounded by each user's history like the seen items.
* **Interactions conditions** (UserID, item-affinity segments): the users whose filter window holds
  such an interaction with the request's query item.

Placeholder values come from ``values`` (global) and, when the requests have a
:data:`FILTER_VALUES` column, from each request (a request's value wins). A request whose values are
malformed, or that lacks a value an INCLUDE expression needs, is listed in ``errors``; an EXCLUDE
expression without its value does not apply to that request.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Union

from pyspark.sql import Column, DataFrame, SparkSession, Window, functions as F

from batchrec.columns import EVENT_TYPE, ITEM_ID, TIMESTAMP, USER_ID
from batchrec.filters import nodes as N
from batchrec.filters import predicates as P
from batchrec.filters.check import (INTERACTIONS_KIND, ITEMS_KIND, RECOMMEND, STRING_FIELD, USERS_KIND,
                                    FilterContext, check_filter, fields_of_dataframe)
from batchrec.filters.eligibility import ACTION, ERROR, EXCLUDE, INCLUDE, SET_ID, Eligibility
from batchrec.filters.errors import FilterError
from batchrec.filters.parser import parse_filter
from batchrec.filters.settings import FilterSettings
from batchrec.filters.values import (ITEM_PATTERN, LIST_PATTERN, MAX_KEYS, MAX_VALUE_LENGTH,
                                     NUMBER_PATTERN, UNESCAPE_PATTERN, ValuePlan, parse_filter_values,
                                     plan_values)

log = logging.getLogger(__name__)

# Column of the requests holding each request's own placeholder values: map<string, string> in
# Personalize's format (see filter_values_column).
FILTER_VALUES = "filterValues"
_ERROR = "_filter_error"
_KEY = "_key"
_SID = "_set_id"
_EVENT = "_event"
_ROW = "_row"
_ACTIONS = {N.INCLUDE: INCLUDE, N.EXCLUDE: EXCLUDE}


def filter_values_column(raw_json: Column) -> Column:
    """The ``filterValues`` object of a raw request line as ``map<string,string>`` (null if absent)."""
    return F.from_json(raw_json, f"struct<{FILTER_VALUES}: map<string,string>>").getField(FILTER_VALUES)


def compile_filter(
    spark: SparkSession,
    expression: Union[str, N.Filter],
    values: Any,
    datasets: Mapping[str, Optional[DataFrame]],
    requests: DataFrame,
    key: str,
    context: FilterContext = RECOMMEND,
    candidates: Optional[DataFrame] = None,
    settings: FilterSettings = FilterSettings(),
) -> Eligibility:
    """Compile ``expression`` for the ``requests`` of one job.

    Args:
        spark: the session (the result is lazy: nothing runs here).
        expression: filter text or a parsed :class:`batchrec.filters.nodes.Filter`.
        values: global placeholder values: JSON text (``--filter-values``), a mapping of name to
            value string, or None.
        datasets: ``{"items", "users", "interactions"}`` DataFrames with upper-case Personalize
            columns (``ITEM_ID``, ``USER_ID``, ``EVENT_TYPE``, ``TIMESTAMP``, ...); a missing or None
            dataset is only an error when the filter needs it.
        requests: one row per request: ``key``, ``USER_ID`` (for IF CurrentUser and Interactions on
            items), ``ITEM_ID`` (the query item: CurrentItem, Interactions on users) and optionally
            :data:`FILTER_VALUES` ``map<string,string>``.
        key: the unique request key column of ``requests`` (e.g. ``USER_ID`` or a line position).
        context: what the job returns and its requests carry (``batchrec.filters.check``).
        candidates: ``[ITEM_ID]`` (``[USER_ID]`` for UserID filters): every ID the job may return.
            Default: the IDs of the items (users) dataset and of the interactions.
        settings: interaction window and limits.

    Returns:
        The :class:`Eligibility`; its DataFrames are lazy.

    Raises:
        FilterError: any problem with the expression, its global values, or the requests' columns.
    """
    filt = expression if isinstance(expression, N.Filter) else parse_filter(expression)
    fields = {kind: fields_of_dataframe(df) for kind, df in datasets.items() if df is not None}
    filt = check_filter(filt, context, fields)
    if key not in requests.columns:
        raise FilterError(f"the requests have no key column {key!r}")
    plan = plan_values(filt, parse_filter_values(values), FILTER_VALUES in requests.columns)
    return _Compiler(spark, filt, plan, datasets, requests, key, fields, candidates, settings).run()


class _Compiler:
    def __init__(self, spark, filt: N.Filter, plan: ValuePlan, datasets, requests: DataFrame, key: str,
                 fields, candidates, settings: FilterSettings):
        self.spark = spark
        self.filt = filt
        self.plan = plan
        self.datasets = datasets
        self.key = key
        self.fields = fields
        self.settings = settings
        self.target_items = filt.target == N.ITEM_ID_TARGET
        self.id_column = ITEM_ID if self.target_items else USER_ID
        self.attr_kind = ITEMS_KIND if self.target_items else USERS_KIND
        self.active = [(i, e) for i, e in enumerate(filt.expressions) if i not in plan.dropped]
        self.params = filt.placeholder_names() if plan.per_line else ()
        self._check_request_columns(requests)
        self.candidates = candidates
        self.requests = self._enrich(requests)

    # --- requests -------------------------------------------------------------------------------

    def _needs(self) -> tuple[bool, bool]:
        """Whether the requests must carry (USER_ID, ITEM_ID)."""
        user = item = False
        for _, expr in self.active:
            if expr.when or (self.target_items and expr.dataset == N.INTERACTIONS):
                user = True
            if not self.target_items and expr.dataset == N.INTERACTIONS:
                item = True
            if any(isinstance(v, N.FieldValue) for c in expr.conditions() for v in c.values):
                item = True
        return user, item

    def _check_request_columns(self, requests: DataFrame) -> None:
        user, item = self._needs()
        if user and USER_ID not in requests.columns:
            raise FilterError(f"the filter tests the requesting user, but the requests have no {USER_ID}",
                              self.filt.text)
        if item and ITEM_ID not in requests.columns:
            raise FilterError(f"the filter needs the query item, but the requests have no {ITEM_ID}",
                              self.filt.text)

    def _param_column(self, name: str) -> str:
        return f"_fv{self.params.index(name)}"

    def _enrich(self, requests: DataFrame) -> DataFrame:
        """Requests with their placeholder values (``_fv<i>``), IF user fields (``_u_<F>``), query
        item fields (``_c_<F>``) and one error message per unusable request."""
        user, item = self._needs()
        columns = [F.col(self.key).alias(_KEY)]
        columns += [F.col(c) for c, need in ((USER_ID, user), (ITEM_ID, item)) if need]
        columns += [F.col(FILTER_VALUES)] if self.plan.per_line else []
        out = requests.select(*columns)
        errors: list[Column] = []
        if self.plan.per_line:
            raw_map = F.col(FILTER_VALUES)
            errors.append(F.when(F.size(raw_map) > MAX_KEYS, F.lit(
                f"filterValues has more than {MAX_KEYS} names")))
            parsed = []
            for name in self.params:
                raw = raw_map.getItem(name)
                present = raw.isNotNull() & (F.trim(raw) != "")
                values = F.transform(F.regexp_extract_all(raw, F.lit(ITEM_PATTERN), 1),
                                     lambda x: F.regexp_replace(x, UNESCAPE_PATTERN, "$1"))
                default = self._global_array(name)
                parsed.append(F.when(present, values).otherwise(default).alias(self._param_column(name)))
                errors.append(F.when(present & (F.length(raw) > MAX_VALUE_LENGTH), F.lit(
                    f'filterValues "{name}": longer than {MAX_VALUE_LENGTH} characters')))
                errors.append(F.when(present & ~raw.rlike(LIST_PATTERN), F.lit(
                    f'filterValues "{name}": expected comma-separated quoted values such as '
                    '"\\"comedy\\",\\"drama\\""')))
            out = out.select("*", *parsed)
            errors += self._value_errors()
        out = self._join_fields(out, user, item)
        message = F.concat_ws("; ", F.array_compact(F.array(*errors))) if errors else F.lit("")
        return out.withColumn(_ERROR, F.when(message != "", message))

    def _global_array(self, name: str) -> Column:
        given = self.plan.values.get(name)
        if not given:
            return F.lit(None).cast("array<string>")
        return F.array(*[F.lit(v) for v in given])

    def _value_errors(self) -> list[Column]:
        """Per-request errors: an INCLUDE placeholder without a value, or a value its operator
        cannot take (for an EXCLUDE only when the value is given)."""
        errors = []
        for _, expr in self.active:
            for cond in expr.conditions():
                for value in cond.values:
                    if not isinstance(value, N.Placeholder):
                        continue
                    vals = F.col(self._param_column(value.name))
                    if expr.action == N.INCLUDE:
                        errors.append(F.when(vals.isNull(), F.lit(
                            f'filterValues has no "{value.name}", which the INCLUDE expression needs')))
                    if cond.operator in N.COMPARISONS:
                        errors.append(F.when(vals.isNotNull() & (F.size(vals) != 1), F.lit(
                            f'filterValues "{value.name}": a comparison ({cond.operator}) takes one value')))
                    if cond.operator in N.ORDERINGS:
                        first = F.try_element_at(vals, F.lit(1))
                        errors.append(F.when(vals.isNotNull() & (F.size(vals) == 1)
                                             & ~first.rlike(NUMBER_PATTERN), F.lit(
                            f'filterValues "{value.name}": not a number, which {cond.operator} needs')))
        return errors

    def _join_fields(self, out: DataFrame, user: bool, item: bool) -> DataFrame:
        user_fields = sorted({c.field.field for _, e in self.active for c in e.when})
        if user_fields:
            users = self._dataset(USERS_KIND).select(
                USER_ID, *[F.col(f).alias(f"_u_{f}") for f in user_fields]).dropDuplicates([USER_ID])
            out = out.join(users, USER_ID, "left")
        item_fields = sorted({v.field for _, e in self.active for c in e.conditions() for v in c.values
                              if isinstance(v, N.FieldValue)})
        if item_fields:
            items = self._dataset(ITEMS_KIND).select(
                ITEM_ID, *[F.col(f).alias(f"_c_{f}") for f in item_fields]).dropDuplicates([ITEM_ID])
            out = out.join(items, ITEM_ID, "left")
        return out

    def _dataset(self, kind: str) -> DataFrame:
        df = self.datasets.get(kind)
        if df is None:  # check_filter has refused fields of missing datasets already
            raise FilterError(f"the filter needs the {kind} dataset", self.filt.text)
        return df

    # --- values as Columns ------------------------------------------------------------------------

    def _listed(self, cond: N.Condition) -> Column:
        """The condition's values as ``array<string>``."""
        value = cond.values[0]
        if isinstance(value, N.Placeholder):
            if self.plan.per_line:
                return F.col(self._param_column(value.name))
            return self._global_array(value.name)
        if isinstance(value, N.FieldValue):
            return P.values_of(F.col(f"_c_{value.field}"))
        return F.array(*[F.lit(v.text) for v in cond.values])

    def _single(self, cond: N.Condition) -> Column:
        """The one value of a comparison as a string Column."""
        value = cond.values[0]
        if isinstance(value, N.FieldValue):
            return F.col(f"_c_{value.field}").cast("string")
        if isinstance(value, N.Placeholder):
            return F.try_element_at(self._listed(cond), F.lit(1))
        return F.lit(value.text)

    def _attribute(self, cond: N.Condition, kind: str, prefix: str = "") -> Column:
        field_class = self.fields.get(kind, {}).get(cond.field.field, STRING_FIELD)
        return P.attribute_condition(cond.operator, F.col(prefix + cond.field.field), field_class,
                                     self._listed(cond), self._single(cond))

    def _applies(self, expr: N.Expression) -> Column:
        """Per request: no error, every placeholder has a value, and the IF holds."""
        condition = F.col(_ERROR).isNull()
        if self.plan.per_line:
            for p in {p.name for p in expr.placeholders()}:
                condition = condition & F.col(self._param_column(p)).isNotNull()
        for cond in expr.when:
            condition = condition & self._attribute(cond, USERS_KIND, prefix="_u_")
        return condition

    def _request_dependent(self, expr: N.Expression) -> tuple[bool, bool]:
        """(content, activation): whether the set's content / whether it applies vary by request."""
        per_line = self.plan.is_request_dependent(expr)
        where_params = self.plan.per_line and any(isinstance(v, N.Placeholder)
                                                  for c in N.leaves(expr.where) for v in c.values)
        current_item = any(isinstance(v, N.FieldValue) for c in N.leaves(expr.where) for v in c.values)
        return where_params or current_item, per_line or bool(expr.when)

    # --- sets ---------------------------------------------------------------------------------

    def _universe(self) -> DataFrame:
        """Candidates with the attribute columns (null for IDs the attribute dataset lacks)."""
        attrs = self._dataset(self.attr_kind)
        if self.candidates is not None:
            ids = self.candidates.select(self.id_column)
        else:
            ids = attrs.select(self.id_column)
            interactions = self.datasets.get(INTERACTIONS_KIND)
            if interactions is not None:
                ids = ids.unionByName(interactions.select(self.id_column))
        ids = ids.where(F.col(self.id_column).isNotNull()).distinct()
        fields = sorted({c.field.field for _, e in self.active if e.dataset != N.INTERACTIONS
                         for c in N.leaves(e.where)} - {self.id_column})
        attrs = attrs.select(self.id_column, *fields).dropDuplicates([self.id_column])
        return ids.join(attrs, self.id_column, "left")

    def _where(self, expr: N.Expression) -> Column:
        return P.combine(expr.where, lambda c: self._attribute(c, self.attr_kind))

    def _interaction_pairs(self, index: int, expr: N.Expression, applying: DataFrame) -> DataFrame:
        """``[key, set_id, ID, action]`` for the requests in ``applying``."""
        leaves = list(N.leaves(expr.where))
        events = _events_that_matter(leaves)
        if self.target_items:
            window = self._window(applying.select(USER_ID).distinct(), USER_ID, events)
            rows = applying.join(window, USER_ID)
        else:
            window = self._window(applying.select(ITEM_ID).distinct(), ITEM_ID, events)
            rows = applying.join(window, ITEM_ID)
        flags = [F.max(P.event_condition(c.operator, F.col(_EVENT), self._listed(c)).cast("int"))
                 .alias(f"_l{j}") for j, c in enumerate(leaves)]
        grouped = rows.groupBy(_KEY, self.id_column).agg(*flags)
        position = {id(c): j for j, c in enumerate(leaves)}
        holds = P.combine(expr.where, lambda c: F.col(f"_l{position[id(c)]}") == 1)
        return grouped.where(holds).select(F.col(_KEY).alias(self.key),
                                           F.lit(index).cast("long").alias(SET_ID), self.id_column,
                                           F.lit(_ACTIONS[expr.action]).alias(ACTION))

    def _window(self, wanted: DataFrame, by: str, events: Optional[frozenset] = None) -> DataFrame:
        """The latest N interactions per user per event type, of the users in ``wanted`` (by user) or
        of the users who interacted with the items in ``wanted`` (by item); only the event types in
        ``events`` (compared case-insensitively) when given."""
        interactions = self._dataset(INTERACTIONS_KIND)
        if events is not None:
            # lower() on both sides in Spark, exactly as the conditions compare (predicates.event_condition)
            interactions = interactions.where(
                F.lower(F.col(EVENT_TYPE)).isin(*[F.lower(F.lit(e)) for e in sorted(events)]))
        if by == ITEM_ID:
            users = interactions.join(wanted, ITEM_ID, "left_semi").select(USER_ID).distinct()
            interactions = interactions.join(users, USER_ID, "left_semi")
        else:
            interactions = interactions.join(wanted, USER_ID, "left_semi")
        event = F.lower(F.col(EVENT_TYPE))
        when = F.col(TIMESTAMP).cast("string").try_cast("long")
        # Ties at one timestamp are broken by item ID so that the window does not change between runs.
        order = Window.partitionBy(USER_ID, _EVENT).orderBy(when.desc_nulls_last(), F.col(ITEM_ID).desc())
        latest = (interactions.select(USER_ID, ITEM_ID, TIMESTAMP, event.alias(_EVENT))
                  .withColumn(_ROW, F.row_number().over(order))
                  .where(F.col(_ROW) <= self.settings.interactions_per_event_type))
        if by == ITEM_ID:
            latest = latest.join(wanted, ITEM_ID, "left_semi")
        return latest.select(USER_ID, ITEM_ID, _EVENT)

    # --- assembly -----------------------------------------------------------------------------

    def run(self) -> Eligibility:
        key, ident = F.col(_KEY).alias(self.key), self.id_column
        static_in, static_out = [], []
        sets, membership, pairs, common = [], [], [], []
        other_includes = False
        for index, expr in self.active:
            action = _ACTIONS[expr.action]
            content_varies, activation_varies = self._request_dependent(expr)
            applying = self.requests.where(self._applies(expr))
            set_id = F.lit(index).cast("long")
            if expr.dataset == N.INTERACTIONS:
                pairs.append(self._interaction_pairs(index, expr, applying))
                if activation_varies:
                    membership.append(applying.select(key, set_id.alias(SET_ID), F.lit(action).alias(ACTION)))
                else:
                    common.append((index, action))
                other_includes |= expr.action == N.INCLUDE
                continue
            universe = self._universe()
            if not content_varies:
                content = universe.where(self._where(expr)).select(ident)
                if not activation_varies:
                    (static_in if expr.action == N.INCLUDE else static_out).append((index, content))
                    continue
                sets.append(content.select(set_id.alias(SET_ID), ident))
                membership.append(applying.select(key, set_id.alias(SET_ID), F.lit(action).alias(ACTION)))
            else:
                binding = self._binding_columns(expr)
                # One set per distinct binding: requests with the same values share it. The binding is
                # hashed as JSON, which keeps nulls and array boundaries apart (hashing the columns
                # directly skips nulls, so (null, "x") and ("x", null) would share an id).
                as_json = F.to_json(F.struct(*[F.col(c) for c in binding]))
                hashed = F.xxhash64(F.lit(index), as_json).alias(_SID)
                bound = applying.select(_KEY, hashed, *binding)
                membership.append(bound.select(key, F.col(_SID).alias(SET_ID), F.lit(action).alias(ACTION)))
                bindings = bound.drop(_KEY).dropDuplicates([_SID])
                sets.append(bindings.crossJoin(universe).where(self._where(expr))
                            .select(F.col(_SID).alias(SET_ID), ident))
            other_includes |= expr.action == N.INCLUDE

        allowed = None
        if static_in and not other_includes:
            allowed = _union([c for _, c in static_in]).distinct()
        else:
            for index, content in static_in:
                sets.append(content.select(F.lit(index).cast("long").alias(SET_ID), ident))
                common.append((index, INCLUDE))
        denied = _union([c for _, c in static_out]).distinct() if static_out else None
        errors = (self.requests.where(F.col(_ERROR).isNotNull()).select(key, F.col(_ERROR).alias(ERROR))
                  if self.plan.per_line else None)
        dropped = tuple(self.filt.expressions[i].text for i in sorted(self.plan.dropped))
        for text in dropped:
            log.info("filter expression skipped (EXCLUDE without a placeholder value): %s", text)
        return Eligibility(
            id_column=ident, key=self.key, allowed=allowed, denied=denied,
            sets=_union(sets).distinct() if sets else None,
            membership=_union(membership) if membership else None,
            common=tuple(common), pairs=_union(pairs) if pairs else None, errors=errors,
            expression=self.filt.text, dropped=dropped)

    def _binding_columns(self, expr: N.Expression) -> list[str]:
        """The request columns a WHERE's content depends on (per-line values, query item fields)."""
        names: dict[str, None] = {}
        for cond in N.leaves(expr.where):
            for value in cond.values:
                if isinstance(value, N.Placeholder) and self.plan.per_line:
                    names.setdefault(self._param_column(value.name), None)
                elif isinstance(value, N.FieldValue):
                    names.setdefault(f"_c_{value.field}", None)
        return list(names)


def _events_that_matter(leaves: list) -> Optional[frozenset]:
    """The event types an Interactions WHERE can be satisfied by (as written), or None for all.

    When every condition is ``EVENT_TYPE IN (literal, ...)`` without ``"*"``, an item qualifies only
    through interactions of the listed types, and the window is per event type, so the other types'
    rows can be dropped before the window without changing the result. ``NOT IN``, placeholders
    and ``"*"`` need every row.
    """
    found: set[str] = set()
    for cond in leaves:
        if cond.operator != N.IN or not all(isinstance(v, N.Literal) for v in cond.values):
            return None
        texts = {v.text for v in cond.values}
        if N.ALL_EVENT_TYPES in texts:
            return None
        found |= texts
    return frozenset(found)


def _union(frames: list[DataFrame]) -> DataFrame:
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out

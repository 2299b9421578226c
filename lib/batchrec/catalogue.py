"""The recipe catalogue: one declaration per recipe, read by every part that needs to know recipes.

Each :class:`RecipeSpec` says what the rest of batchrec must know about a recipe, so that adding a
recipe is one training module plus one entry in :data:`RECIPES`:

* ``name`` (the ``--recipe`` choice) and a one-line ``summary`` for ``--help``;
* ``params``: every parameter with its default, type and range (``--param`` checks, the recipe's
  ``[settings_section]`` of the configuration, which :mod:`batchrec.config` builds from these);
* ``search_space``: the values ``--hpo`` tries;
* ``artifacts``: the recipe's own artifacts and their schemas (every version also stores the
  :data:`COMMON_ARTIFACTS`), which the registry checks on save;
* ``answers``: what the recipe's model can answer (:data:`ITEMS_FOR_USER`, :data:`RANKS_ITEMS`,
  :data:`SCORED`, :data:`ITEMS_FOR_ITEM`, :data:`USERS_FOR_ITEM`) and ``scorer``, the scoring module that answers
  it. Batch jobs dispatch on these, never on a recipe's name.

Nothing here imports pyspark: the CLI reads the catalogue for ``--help`` and to check ``--param``
before Spark starts.
"""

from __future__ import annotations

import importlib
import math
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from batchrec.errors import UsageError

# What a model can answer.
ITEMS_FOR_USER = "items_for_user"  # recommend: top-N items for a user
RANKS_ITEMS = "ranks_items"  # rank: order a user's item list
SCORED = "scored"  # the answers carry model scores (Personalize prints "scores" only for these)
ITEMS_FOR_ITEM = "items_for_item"  # related items
USERS_FOR_ITEM = "users_for_item"  # segments: users for an item or a set of items
CAPABILITIES = (ITEMS_FOR_USER, RANKS_ITEMS, SCORED, ITEMS_FOR_ITEM, USERS_FOR_ITEM)

# Artifacts every version stores (built by ``batchrec.recipes.train_recipe`` for every recipe).
USER_MAP = "user_map"
ITEM_MAP = "item_map"
POPULAR_ITEMS = "popular_items"
ITEM_STATS = "item_stats"
SEEN_ITEMS = "seen_items"
# Artifacts of particular recipes.
USER_FACTORS = "user_factors"
ITEM_FACTORS = "item_factors"
TRENDING_ITEMS = "trending_items"

RANKED_LIST_SCHEMA = "ITEM_ID string, score double, rank int"
COMMON_ARTIFACTS: Mapping[str, str] = types.MappingProxyType({
    USER_MAP: "USER_ID string, user_idx int",
    ITEM_MAP: "ITEM_ID string, item_idx int",
    POPULAR_ITEMS: RANKED_LIST_SCHEMA,
    ITEM_STATS: "ITEM_ID string, item_idx int, n_interactions long, first_timestamp long, "
                "creation_timestamp long",
    # What each user has interacted with, so batch jobs exclude it without re-reading the datasets.
    SEEN_ITEMS: "USER_ID string, ITEM_ID string, EVENT_TYPE string",
})
FACTOR_SCHEMAS = {USER_FACTORS: "user_idx int, features array<float>",
                  ITEM_FACTORS: "item_idx int, features array<float>"}
# The item-based recipes (ease, sar): each user's weighted history, and EASE's dense weights B (one
# row of model-item weights per model item).
USER_HISTORY = "user_history"
USER_HISTORY_SCHEMA = "user_idx int, item_idx int, value float"
ITEM_WEIGHTS = "item_weights"
ITEM_WEIGHTS_SCHEMA = "item_idx int, weights array<float>"


@dataclass(frozen=True)
class Param:
    """One recipe parameter: its default, type and allowed values.

    ``kind`` defaults to the type of ``default``; ``minimum``/``maximum`` bound numbers (inclusive),
    ``above`` bounds them strictly; ``choices`` lists the allowed values of a string.
    """

    default: Any
    minimum: Optional[float] = None
    above: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple = ()
    kind: Optional[type] = None
    help: str = ""

    @property
    def type(self) -> type:
        """The parameter's Python type (``int``, ``float``, ``str`` or ``bool``)."""
        return self.kind or type(self.default)

    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum}")
        if self.above is not None:
            bounds.append(f"> {self.above}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum}")
        return f"{self.type.__name__} {' and '.join(bounds)}".strip()

    def check(self, name: str, value: Any, context: str = "") -> Any:
        """``value`` in the parameter's type (ints widen to float), or a UsageError naming the
        parameter ``name`` (and ``context``, e.g. " for recipe user-personalization")."""
        kind = self.type
        ok = ((kind is bool and isinstance(value, bool))
              or (kind is int and isinstance(value, int) and not isinstance(value, bool))
              or (kind is float and isinstance(value, (int, float)) and not isinstance(value, bool))
              or (kind is str and isinstance(value, str)))
        if not ok:
            raise UsageError(f"parameter {name}={value!r}{context} has type {type(value).__name__}; "
                             f"expected {self.expected()}")
        value = float(value) if kind is float else value
        if kind is float and not math.isfinite(value):
            raise UsageError(f"parameter {name}={value!r}{context}; expected a finite {self.expected()}")
        if (self.choices and value not in self.choices
                or self.minimum is not None and value < self.minimum
                or self.above is not None and not value > self.above
                or self.maximum is not None and value > self.maximum):
            raise UsageError(f"parameter {name}={value!r}{context}; expected {self.expected()}")
        return value


@dataclass(frozen=True)
class RecipeSpec:
    """Everything batchrec knows about one recipe (see the module docstring)."""

    name: str
    module: str
    settings_section: str
    summary: str
    params: Mapping[str, Param] = field(default_factory=dict)
    search_space: Mapping[str, tuple] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    answers: frozenset = frozenset()
    scorer: str = ""
    scorer_options: Mapping[str, Any] = field(default_factory=dict)
    rules: tuple = ()  # functions params -> None or what is wrong with a combination of values

    def can(self, capability: str) -> bool:
        """Whether the recipe's model answers ``capability``."""
        return capability in self.answers

    def training_module(self):
        """The module with ``train(spark, data, params)``."""
        return importlib.import_module(self.module)

    def scoring_module(self):
        """The module answering this recipe's capabilities (see ``batchrec.scoring``)."""
        return importlib.import_module(self.scorer)


RECIPES: dict[str, RecipeSpec] = {}


def register(spec: RecipeSpec) -> RecipeSpec:
    """Add ``spec`` to the catalogue (tests use it for toy recipes); returns it."""
    unknown = set(spec.answers) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"recipe {spec.name}: unknown capabilities {sorted(unknown)}")
    missing = set(spec.search_space) - set(spec.params)
    if missing:
        raise ValueError(f"recipe {spec.name}: search space names unknown parameters {sorted(missing)}")
    RECIPES[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a recipe (the counterpart of :func:`register` for tests)."""
    RECIPES.pop(name, None)


def names() -> tuple[str, ...]:
    """Every recipe name, in catalogue order (the CLI's ``--recipe`` choices)."""
    return tuple(RECIPES)


def get(name: str) -> RecipeSpec:
    """The spec of ``name``.

    Raises:
        UsageError: an unknown recipe, listing the known ones.
    """
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def able(capability: str) -> tuple[str, ...]:
    """Names of the recipes that answer ``capability``."""
    return tuple(n for n, s in RECIPES.items() if s.can(capability))


def require(name: str, capability: str, what: str) -> RecipeSpec:
    """The spec of ``name`` if it answers ``capability``, else a UsageError saying which recipes do.

    ``what`` names the job for the message, e.g. ``"recommend items for a user"``.
    """
    spec = get(name)
    if not spec.can(capability):
        raise UsageError(f"a {name} model cannot {what}; recipes that can: {', '.join(able(capability))}")
    return spec


def artifact_schemas() -> dict[str, str]:
    """Every artifact name of every recipe (and the common ones) with its schema."""
    schemas = dict(COMMON_ARTIFACTS)
    for spec in RECIPES.values():
        schemas.update(spec.artifacts)
    return schemas


def defaults(name: str, section: Any = None) -> dict:
    """Recipe parameters from its configuration section (``settings.<settings_section>``), or the
    catalogue's defaults when ``section`` is None."""
    params = get(name).params
    if section is None:
        return {key: param.default for key, param in params.items()}
    return {key: getattr(section, key) for key in params}


def resolve_params(name: str, section: Any, params: Optional[Mapping[str, Any]] = None) -> dict:
    """Defaults from ``section`` (None: the catalogue's) overlaid with ``params``, each checked by
    name, type and range.

    Raises:
        UsageError: an unknown parameter (listing the valid ones) or a bad value.
    """
    spec = get(name)
    resolved = defaults(name, section)
    for key, value in (params or {}).items():
        param = spec.params.get(key)
        if param is None:
            raise UsageError(f"unknown parameter {key!r} for recipe {name}; valid parameters: "
                             f"{', '.join(sorted(spec.params)) or 'none'}")
        resolved[key] = param.check(key, value, f" for recipe {name}")
    for rule in spec.rules:
        problem = rule(resolved)
        if problem:
            raise UsageError(f"{problem} (recipe {name})")
    return resolved


def search_space(name: str, fixed: Mapping[str, Any] = ()) -> dict[str, tuple]:
    """The ``--hpo`` values of ``name`` minus the parameters in ``fixed``."""
    return {k: v for k, v in get(name).search_space.items() if k not in dict(fixed)}


# --- the recipes -----------------------------------------------------------------------------------

def _als_solver_rules(params: Mapping[str, Any]) -> Optional[str]:
    """What only one of the ALS solvers can do."""
    if params["solver"] == "mllib" and params["regularization"] != "scaled":
        return (f"parameter regularization={params['regularization']!r} needs solver=cg; MLlib only "
                "has regularization='scaled' (regParam times each row's number of ratings)")
    if params["solver"] == "cg" and params["nonnegative"]:
        return "parameter nonnegative=true needs solver=mllib; the cg solver has no non-negativity constraint"
    return None


register(RecipeSpec(
    name="user-personalization",
    module="batchrec.recipes.als",
    settings_section="als",
    summary="implicit-feedback matrix factorization (conjugate-gradient ALS on Spark, or MLlib's ALS)",
    params={
        "rank": Param(64, minimum=1, help="latent factors; tuned on MovieLens, docs/benchmarks.md"),
        "regParam": Param(0.1, minimum=0.0,
                          help="MLlib scales it by each user's/item's number of interactions"),
        "alpha": Param(1.0, minimum=0.0, help="confidence = 1 + alpha * weight"),
        "maxIter": Param(7, minimum=1, help="best validation ndcg@10 of 2..10 iterations"),
        "seed": Param(42),
        "numUserBlocks": Param(0, minimum=0, help="0 = sized to the cluster (default parallelism)"),
        "numItemBlocks": Param(0, minimum=0),
        "checkpointInterval": Param(10, minimum=-1),
        "nonnegative": Param(False),
        # cg fits several times faster than MLlib's defaults at equal ndcg@10 (5M interactions,
        # rank 64, docs/benchmarks.md); mllib stays for nonnegative factors and as the fallback
        # for factors too large to broadcast.
        "solver": Param("cg", choices=("cg", "mllib"),
                        help="cg: batchrec's conjugate-gradient solver; mllib: MLlib's block solver"),
        "regularization": Param("scaled", choices=("scaled", "constant"),
                                help="cg only: scaled = regParam x each row's interactions (MLlib's)"),
        "cgSteps": Param(3, minimum=1, help="cg only: conjugate-gradient steps per row and half-iteration"),
        "cgKernel": Param("auto", choices=("auto", "numba", "numpy"),
                          help="cg only: auto = numba's compiled kernel when installed, else numpy's"),
        "cgMaxBroadcastMb": Param(1024.0, minimum=0.0,
                                  help="cg only: both factor sides larger than this train with mllib"),
    },
    search_space={
        "rank": (16, 32, 64, 128),
        "regParam": (0.03, 0.1, 0.3, 1.0),
        "alpha": (0.5, 1.0, 2.0, 5.0, 20.0),
        "maxIter": (5, 10, 15),
    },
    artifacts=FACTOR_SCHEMAS,
    answers=frozenset({ITEMS_FOR_USER, RANKS_ITEMS, SCORED, USERS_FOR_ITEM}),
    scorer="batchrec.scoring.factors",
    rules=(_als_solver_rules,),
))

register(RecipeSpec(
    name="popularity-count",
    module="batchrec.recipes.popularity",
    settings_section="popularity",
    summary="items by distinct users, the same list for everyone",
    params={"event_type": Param("", help='"" = all event types')},
    answers=frozenset({ITEMS_FOR_USER, RANKS_ITEMS}),
    scorer="batchrec.scoring.lists",
    scorer_options={"lists": ((POPULAR_ITEMS, "popular"),)},
))

register(RecipeSpec(
    name="trending-now",
    module="batchrec.recipes.trending",
    settings_section="trending",
    summary="items growing fastest between the last two time windows",
    params={"window_days": Param(7.0, above=0.0, help="width of each window in days")},
    search_space={"window_days": (1.0, 3.0, 7.0, 14.0, 30.0)},
    artifacts={TRENDING_ITEMS: RANKED_LIST_SCHEMA},
    answers=frozenset({ITEMS_FOR_USER, RANKS_ITEMS}),
    scorer="batchrec.scoring.lists",
    scorer_options={"lists": ((TRENDING_ITEMS, "trending"), (POPULAR_ITEMS, "popular"))},
))


ITEM_NEIGHBOURS = "item_neighbours"
ITEM_NEIGHBOURS_SCHEMA = "ITEM_ID string, rank int, NEIGHBOUR_ID string, score double"
MAX_NEIGHBOURS = 1000


def _caps(min_user: float, max_user: float, min_item: float, max_item: float) -> dict:
    """Personalize's SIMS featurization caps, percentiles from 0 to 1 (0 and 1 switch one off)."""
    unit = {"minimum": 0.0, "maximum": 1.0}
    return {
        "min_user_history_length_percentile": Param(min_user, **unit),
        "max_user_history_length_percentile": Param(max_user, **unit),
        "min_item_interaction_count_percentile": Param(min_item, **unit),
        "max_item_interaction_count_percentile": Param(max_item, **unit),
    }


def _caps_ordered(params: Mapping[str, Any]) -> Optional[str]:
    for kind in ("user_history_length", "item_interaction_count"):
        low, high = params[f"min_{kind}_percentile"], params[f"max_{kind}_percentile"]
        if low > high:
            return (f"parameters min_{kind}_percentile={low} > max_{kind}_percentile={high}; "
                    "expected the minimum percentile at most the maximum")
    return None


register(RecipeSpec(
    name="sims",
    module="batchrec.recipes.sims",
    settings_section="sims",
    summary="related items by co-occurrence (Personalize's SIMS)",
    params={
        "popularity_discount_factor": Param(0.5, minimum=0.0, maximum=1.0,
                                            help="score = co-count / (n_i * n_j) ** factor"),
        "min_cointeraction_count": Param(3, minimum=0, help="users who interacted with both items"),
        "similarity": Param("cooccurrence", choices=("cooccurrence", "cosine", "jaccard", "lift", "llr")),
        "num_neighbours": Param(100, minimum=1, maximum=MAX_NEIGHBOURS, help="kept per item"),
        **_caps(0.005, 0.995, 0.01, 1.0),
    },
    search_space={"popularity_discount_factor": (0.0, 0.25, 0.5, 0.75, 1.0)},
    artifacts={ITEM_NEIGHBOURS: ITEM_NEIGHBOURS_SCHEMA},
    answers=frozenset({ITEMS_FOR_ITEM}),
    scorer="batchrec.scoring.related",
    rules=(_caps_ordered,),
))

register(RecipeSpec(
    name="similar-items",
    module="batchrec.recipes.similar_items",
    settings_section="similar_items",
    summary="co-occurrence blended with item metadata, so cold items get neighbours too",
    params={
        "min_cointeraction_count": Param(2, minimum=0),
        "interaction_shrinkage": Param(5.0, minimum=0.0,
                                       help="co-occurrence weight of an item with n interactions: n/(n+s)"),
        "num_neighbours": Param(100, minimum=1, maximum=MAX_NEIGHBOURS),
        "max_values_per_field": Param(200, minimum=1),
        "numeric_bins": Param(10, minimum=2),
        **_caps(0.005, 0.995, 0.0, 1.0),
    },
    artifacts={ITEM_NEIGHBOURS: ITEM_NEIGHBOURS_SCHEMA},
    answers=frozenset({ITEMS_FOR_ITEM}),
    scorer="batchrec.scoring.related",
    rules=(_caps_ordered,),
))

register(RecipeSpec(
    name="ease",
    module="batchrec.recipes.ease",
    settings_section="ease",
    summary="Steck's EASE: closed-form item-item regression on the co-occurrence matrix",
    params={
        "regularization": Param(200.0, above=0.0, help="lambda, chosen on validation data"),
        "max_items": Param(30000, minimum=1, help="driver-side inversion; beyond it the most frequent items"),
        **_caps(0.0, 1.0, 0.0, 1.0),
    },
    search_space={"regularization": (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0)},
    artifacts={ITEM_WEIGHTS: ITEM_WEIGHTS_SCHEMA, USER_HISTORY: USER_HISTORY_SCHEMA},
    answers=frozenset({ITEMS_FOR_USER, RANKS_ITEMS, SCORED}),
    scorer="batchrec.scoring.item_based",
    scorer_options={"kind": "ease"},
    rules=(_caps_ordered,),
))

register(RecipeSpec(
    name="sar",
    module="batchrec.recipes.sar",
    settings_section="sar",
    summary="SAR: time-decayed user affinity times item similarity",
    params={
        "similarity": Param("jaccard", choices=("jaccard", "lift", "cooccurrence")),
        "time_decay_half_life_days": Param(30.0, minimum=0.0, help="0 = no decay"),
        "min_cointeraction_count": Param(1, minimum=0),
        "num_neighbours": Param(500, minimum=1, maximum=MAX_NEIGHBOURS),
        **_caps(0.0, 1.0, 0.0, 1.0),
    },
    search_space={"similarity": ("jaccard", "lift"),
                  "time_decay_half_life_days": (0.0, 7.0, 30.0, 90.0, 365.0)},
    artifacts={ITEM_NEIGHBOURS: ITEM_NEIGHBOURS_SCHEMA, USER_HISTORY: USER_HISTORY_SCHEMA},
    answers=frozenset({ITEMS_FOR_USER, RANKS_ITEMS, SCORED}),
    scorer="batchrec.scoring.item_based",
    scorer_options={"kind": "sar"},
    rules=(_caps_ordered,),
))

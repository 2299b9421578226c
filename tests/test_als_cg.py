"""The cg solver of user-personalization against dense numpy implicit ALS, and its wiring."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from batchrec.columns import CONFIDENCE, ITEM_IDX, USER_IDX
from batchrec.config import PrepareSettings, Settings
from batchrec.errors import UsageError
from batchrec import catalogue
from batchrec.recipes import als, als_cg, resolve_params, train_recipe
from batchrec.recipes import als_cg_kernel, als_cg_numba
from batchrec.recipes.als_cg_kernel import CsrChunk, chunk_bounds, initial_factors

EVENTS = "USER_ID string, ITEM_ID string, EVENT_TYPE string, EVENT_VALUE double, TIMESTAMP long"
N_USERS, N_ITEMS = 30, 24


# ---------------------------------------------------------------- dense numpy reference

def random_ratings(seed=3, density=0.25, negative=False):
    """A dense (users x items) rating matrix, every row and column rated at least once."""
    rng = np.random.default_rng(seed)
    R = np.where(rng.random((N_USERS, N_ITEMS)) < density, rng.integers(1, 4, (N_USERS, N_ITEMS)), 0)
    R = R.astype(np.float64)
    R[np.arange(N_USERS), np.arange(N_USERS) % N_ITEMS] = 2.0
    R[np.arange(N_ITEMS) % N_USERS, np.arange(N_ITEMS)] = 1.0
    if negative:  # MLlib's convention: |r| sets the confidence, r <= 0 means preference 0
        R[0, 5], R[3, 7] = -2.0, -1.0
    return R


def dense_solve(R, Y, alpha, reg, scaled=True):
    """Exact implicit-ALS rows: (YᵀC_uY + λ_u I) x_u = YᵀC_u p_u, in float64."""
    Y = Y.astype(np.float64)
    out = np.zeros((R.shape[0], Y.shape[1]))
    for u, r in enumerate(R):
        c, p = 1.0 + alpha * np.abs(r), (r > 0).astype(float)
        lam = reg * (r > 0).sum() if scaled else reg
        out[u] = np.linalg.solve(Y.T @ (c[:, None] * Y) + lam * np.eye(Y.shape[1]), Y.T @ (c * p))
    return out


def dense_loss(R, X, Y, alpha, reg, scaled=True):
    """Σ_ui c_ui (p_ui − x_uᵀy_i)² + Σ_u λ_u‖x_u‖² + Σ_i λ_i‖y_i‖² over every pair."""
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    C, P = 1.0 + alpha * np.abs(R), (R > 0).astype(float)
    lam_u = reg * (R > 0).sum(1) if scaled else np.full(R.shape[0], reg)
    lam_i = reg * (R > 0).sum(0) if scaled else np.full(R.shape[1], reg)
    return float((C * (P - X @ Y.T) ** 2).sum() + (lam_u * (X ** 2).sum(1)).sum()
                 + (lam_i * (Y ** 2).sum(1)).sum())


def chunk_of(R):
    rows, cols = np.nonzero(R)
    indptr = np.zeros(R.shape[0] + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=R.shape[0]), out=indptr[1:])
    return CsrChunk(np.arange(R.shape[0], dtype=np.int32), indptr, cols.astype(np.int32),
                    R[rows, cols].astype(np.float32))


# ---------------------------------------------------------------- kernels

KERNELS = {"numpy": als_cg_kernel.solve_chunk, "numba": als_cg_numba.solve_chunk}


@pytest.fixture(params=sorted(KERNELS))
def solve_chunk(request):
    """Each cg kernel in turn: the same tests hold for both."""
    return KERNELS[request.param]


@pytest.mark.parametrize("regularization", ["scaled", "constant"])
def test_enough_cg_steps_reach_the_dense_solution(regularization, solve_chunk):
    R = random_ratings(negative=True)
    rank, alpha, reg = 5, 2.0, 0.1
    Y = np.random.default_rng(0).standard_normal((N_ITEMS, rank)).astype(np.float32)
    expected = dense_solve(R, Y, alpha, reg, scaled=regularization == "scaled")
    gram = Y.T.astype(np.float64) @ Y
    start = np.zeros((N_USERS, rank), np.float32)
    errors = []
    for steps in (1, 2, 3 * rank):
        got = solve_chunk(chunk_of(R), start, Y, gram, alpha=alpha, reg_param=reg,
                          regularization=regularization, steps=steps).factors
        errors.append(np.abs(got - expected).max())
    assert errors[-1] < 1e-4 * np.abs(expected).max()
    assert errors[0] > errors[1] > errors[2]  # each step gets closer; one step is far off


def test_chunk_loss_is_its_rows_part_of_the_objective(solve_chunk):
    R = random_ratings()
    rank, alpha, reg = 4, 1.5, 0.05
    Y = np.random.default_rng(1).standard_normal((N_ITEMS, rank)).astype(np.float32)
    result = solve_chunk(chunk_of(R), np.zeros((N_USERS, rank), np.float32), Y,
                         Y.T.astype(np.float64) @ Y, alpha=alpha, reg_param=reg,
                         regularization="scaled", steps=2)
    X = result.factors
    lam_i = reg * (R > 0).sum(0)
    item_penalty = float((lam_i * (Y.astype(np.float64) ** 2).sum(1)).sum())
    assert result.loss + item_penalty == pytest.approx(dense_loss(R, X, Y, alpha, reg), rel=1e-5)
    assert result.penalty == pytest.approx(float((reg * (R > 0).sum(1) * (X.astype(float) ** 2).sum(1)).sum()),
                                           rel=1e-5)
    assert np.allclose(result.gram, X.T.astype(float) @ X, rtol=1e-6)


def test_warm_start_at_the_solution_stays_there(solve_chunk):
    R = random_ratings()
    Y = np.random.default_rng(2).standard_normal((N_ITEMS, 3)).astype(np.float32)
    exact = dense_solve(R, Y, 1.0, 0.1).astype(np.float32)
    got = solve_chunk(chunk_of(R), exact, Y, Y.T.astype(np.float64) @ Y, alpha=1.0, reg_param=0.1,
                      regularization="scaled", steps=3).factors
    assert np.abs(got - exact).max() < 1e-4 * np.abs(exact).max()


@pytest.mark.parametrize("regularization", ["scaled", "constant"])
def test_the_numba_kernel_takes_the_numpy_kernels_steps(regularization):
    """Few steps from a warm start (far from converged, so every step shows) on a skewed problem."""
    rng = np.random.default_rng(11)
    n_rows, n_fixed, rank = 400, 300, 32
    counts = np.minimum(rng.zipf(1.6, n_rows), n_fixed)
    indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    indices = np.concatenate([np.sort(rng.choice(n_fixed, c, replace=False)) for c in counts]).astype(np.int32)
    ratings = rng.choice(np.array([-1.0, 1.0, 2.0, 5.0], np.float32), indptr[-1])
    chunk = CsrChunk(np.arange(n_rows, dtype=np.int32), indptr, indices, ratings)
    Y = (rng.standard_normal((n_fixed, rank)) / 4).astype(np.float32)
    start = (rng.standard_normal((n_rows, rank)) / 4).astype(np.float32)
    args = (chunk, start, Y, Y.T.astype(np.float64) @ Y)
    kwargs = {"alpha": 0.7, "reg_param": 0.2, "regularization": regularization, "steps": 3}
    expected, got = als_cg_kernel.solve_chunk(*args, **kwargs), als_cg_numba.solve_chunk(*args, **kwargs)
    assert np.abs(got.factors - expected.factors).max() < 1e-4 * np.abs(expected.factors).max()
    assert np.abs(got.factors - start).max() > 0.1  # the steps moved the rows
    assert got.loss == pytest.approx(expected.loss, rel=1e-5)
    assert got.penalty == pytest.approx(expected.penalty, rel=1e-5)
    assert np.allclose(got.gram, expected.gram, rtol=1e-4, atol=1e-6)


def test_chunk_bounds_keep_rows_whole_within_the_budget():
    indptr = np.array([0, 3, 4, 20, 21, 22, 30], np.int64)
    rank = 2  # 8 bytes per gathered rating: a 40-byte budget is 5 ratings
    bounds = chunk_bounds(indptr, rank, chunk_bytes=40)
    assert bounds == [(0, 2), (2, 3), (3, 5), (5, 6)]  # the 16-rating row is a chunk of its own
    assert chunk_bounds(indptr, rank) == [(0, 6)]


def test_initial_factors_are_unit_rows_fixed_by_the_seed():
    a, b, c = initial_factors(50, 8, 7), initial_factors(50, 8, 7), initial_factors(50, 8, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)


# ---------------------------------------------------------------- Spark solver

PARAMS = {"rank": 4, "regParam": 0.1, "alpha": 2.0, "maxIter": 1, "seed": 11,
          "regularization": "scaled", "cgSteps": 3, "cgMaxBroadcastMb": 1024.0}


def rated_frame(spark, R):
    users, items = np.nonzero(R)
    rows = [(int(u), int(i), float(R[u, i])) for u, i in zip(users, items)]
    return spark.createDataFrame(rows, f"{USER_IDX} int, {ITEM_IDX} int, {CONFIDENCE} float")


def test_fit_with_exact_steps_equals_dense_als(spark):
    R = random_ratings(negative=True)
    params = {**PARAMS, "maxIter": 2, "cgSteps": 12}
    fitted = als_cg.fit(spark, rated_frame(spark, R), params, blocks=(3, 2))
    # MLlib's order: unit-norm random users, then items solved first, then users, each iteration
    U = initial_factors(N_USERS, 4, params["seed"])
    for _ in range(params["maxIter"]):
        V = dense_solve(R.T, U, params["alpha"], params["regParam"])
        U = dense_solve(R, V, params["alpha"], params["regParam"])
    assert np.abs(fitted.item_factors - V).max() < 1e-3 * np.abs(V).max()
    assert np.abs(fitted.user_factors - U).max() < 1e-3 * np.abs(U).max()
    assert fitted.user_present.all() and fitted.item_present.all()
    assert fitted.loss[-1] == pytest.approx(dense_loss(R, U, V, params["alpha"], params["regParam"]), rel=1e-4)


def test_loss_decreases_over_iterations_and_is_reported_right(spark):
    R = random_ratings(seed=5)
    params = {**PARAMS, "maxIter": 6, "cgSteps": 2, "regParam": 0.05}
    fitted = als_cg.fit(spark, rated_frame(spark, R), params, blocks=(2, 2))
    losses = fitted.loss
    assert len(losses) == 6 and len(fitted.seconds) == 6
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    expected = dense_loss(R, fitted.user_factors, fitted.item_factors, params["alpha"], params["regParam"])
    assert losses[-1] == pytest.approx(expected, rel=1e-4)


def test_same_seed_and_partitioning_give_the_same_factors(spark):
    rated = rated_frame(spark, random_ratings(seed=9))
    params = {**PARAMS, "maxIter": 2}
    first = als_cg.fit(spark, rated, params, blocks=(3, 3))
    again = als_cg.fit(spark, rated, params, blocks=(3, 3))
    other = als_cg.fit(spark, rated, {**params, "seed": 12}, blocks=(3, 3))
    assert np.array_equal(first.user_factors, again.user_factors)
    assert np.array_equal(first.item_factors, again.item_factors)
    assert not np.allclose(first.user_factors, other.user_factors)


def test_constant_regularization_matches_the_dense_solve(spark):
    R = random_ratings(seed=4)
    # the numpy kernel through Spark (the other fits here run the default, numba)
    params = {**PARAMS, "regularization": "constant", "regParam": 0.5, "cgSteps": 12, "cgKernel": "numpy"}
    fitted = als_cg.fit(spark, rated_frame(spark, R), params, blocks=(2, 2))
    U = initial_factors(N_USERS, 4, params["seed"])
    V = dense_solve(R.T, U, params["alpha"], 0.5, scaled=False)
    U = dense_solve(R, V, params["alpha"], 0.5, scaled=False)
    assert np.abs(fitted.user_factors - U).max() < 1e-3 * np.abs(U).max()


def loop_reference(R, params, steps):
    """The cg fit's sequence in one process: items then users each iteration, each side's first
    solve from zero and later ones from its last factors, with the numpy kernel on whole sides."""
    settings = {"alpha": params["alpha"], "reg_param": params["regParam"],
                "regularization": params["regularization"], "steps": steps}
    U = initial_factors(R.shape[0], params["rank"], params["seed"])
    V = np.zeros((R.shape[1], params["rank"]), np.float32)
    for iteration in range(params["maxIter"]):
        V = als_cg_kernel.solve_chunk(chunk_of(R.T), V if iteration else 0 * V, U,
                                      U.T.astype(np.float64) @ U, **settings).factors
        U = als_cg_kernel.solve_chunk(chunk_of(R), U if iteration else 0 * U, V,
                                      V.T.astype(np.float64) @ V, **settings).factors
    return U, V


def test_each_stage_warm_starts_from_the_sides_last_factors(spark):
    """One CG step per solve is far from converged, so every warm start shows in the result; more
    partitions than items leaves some partitions empty. (The default kernel, numba, runs here; the
    numpy kernel takes the same steps, tested above without Spark.)"""
    R = random_ratings(seed=8, negative=True)
    params = {**PARAMS, "maxIter": 3, "cgSteps": 1}
    fitted = als_cg.fit(spark, rated_frame(spark, R), params, blocks=(2, N_ITEMS + 4))
    U, V = loop_reference(R, params, steps=1)
    assert np.abs(fitted.item_factors - V).max() < 1e-4 * np.abs(V).max()
    assert np.abs(fitted.user_factors - U).max() < 1e-4 * np.abs(U).max()
    cold, _ = loop_reference(R, {**params, "maxIter": 1}, steps=1)
    assert np.abs(fitted.user_factors - cold).max() > 0.1 * np.abs(U).max()  # the iterations moved on


def test_kernel_auto_is_numba_when_it_imports_else_numpy_with_a_warning(monkeypatch, caplog):
    assert als_cg.kernel_name({"cgKernel": "auto"}) == "numba"
    assert als_cg.kernel_name({"cgKernel": "numpy"}) == "numpy"
    monkeypatch.setattr(als_cg_numba, "available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="batchrec.recipes.als_cg"):
        assert als_cg.kernel_name({"cgKernel": "auto"}) == "numpy"
    assert any("numba is not installed" in r.getMessage() for r in caplog.records)
    with pytest.raises(UsageError, match="cgKernel=numba needs the numba package"):
        als_cg.kernel_name({"cgKernel": "numba"})


def test_rows_without_ratings_are_not_exported(spark):
    R = random_ratings()
    rated = rated_frame(spark, R).where(f"{USER_IDX} != 4")  # user 4 has no rating left
    fitted = als_cg.fit(spark, rated, PARAMS, blocks=(2, 2))
    assert not fitted.user_present[4] and fitted.user_present.sum() == N_USERS - 1
    frame = als_cg.factor_frame(spark, fitted.user_factors, fitted.user_present, USER_IDX)
    assert frame.schema.simpleString() == "struct<user_idx:int,features:array<float>>"
    rows = frame.orderBy(USER_IDX).collect()
    assert [r[USER_IDX] for r in rows] == [u for u in range(N_USERS) if u != 4]
    assert np.allclose(np.array([r["features"] for r in rows]), fitted.user_factors[fitted.user_present])


# ---------------------------------------------------------------- recipe wiring

def events_of(spark, R):
    users, items = np.nonzero(R)
    rows = [(f"u{u:02d}", f"i{i:02d}", "click", None, int(u * 100 + i)) for u, i in zip(users, items)]
    return spark.createDataFrame(rows, EVENTS)


def settings():
    return Settings(prepare=PrepareSettings(max_user_history_length_percentile=1.0))


def train(spark, recipe, events, settings, params=None):
    """train_recipe with the settings' [prepare] section and the recipe's resolved parameters."""
    return train_recipe(spark, recipe, events, settings.prepare, resolve_params(recipe, settings, params))


def test_train_recipe_with_cg_exports_the_factor_artifacts(spark):
    R = (random_ratings(seed=6) > 0).astype(float)
    params = {"solver": "cg", "rank": 4, "maxIter": 4, "alpha": 2.0, "seed": 3}
    model = train(spark, "user-personalization", events_of(spark, R), settings(), params=params)
    arts = model.artifacts
    assert arts["user_factors"].schema.simpleString() == "struct<user_idx:int,features:array<float>>"
    assert arts["item_factors"].schema.simpleString() == "struct<item_idx:int,features:array<float>>"
    assert arts["user_factors"].count() == N_USERS and arts["item_factors"].count() == N_ITEMS
    assert model.stats["solver_used"] == "cg" and len(model.stats["cg_loss"]) == 4
    assert "solver_fallback" not in model.stats
    model.release()


def test_the_sizes_counted_while_indexing_are_the_rated_problems_sizes(spark, monkeypatch):
    """cg takes its problem's sizes from the index counts instead of counting the rated pairs:
    they must agree with that count when preparation drops users and items (event types) and
    trims histories (the cap)."""
    R = (random_ratings(seed=6) > 0).astype(float)
    users, items = np.nonzero(R)
    # user 0's and item 1's events are all views, which the event-type rule drops
    rows = [(f"u{u:02d}", f"i{i:02d}", "view" if u == 0 or i == 1 else "click", None, int(u * 100 + i))
            for u, i in zip(users, items)]
    events = spark.createDataFrame(rows, EVENTS)
    prepare = PrepareSettings(event_types=("click",), max_user_history_length_percentile=0.5)
    seen = {}
    real_fit = als_cg.fit

    def fit(spark_, rated, params, blocks, problem=None):
        seen["given"], seen["counted"] = problem, als_cg.plan(rated, params)
        return real_fit(spark_, rated, params, blocks, problem)

    monkeypatch.setattr(als_cg, "fit", fit)
    params = resolve_params("user-personalization", Settings(), {"solver": "cg", "rank": 4, "maxIter": 2})
    model = train_recipe(spark, "user-personalization", events, prepare, params)
    model.release()
    assert seen["given"] == seen["counted"]
    assert seen["given"].n_users == N_USERS - 1 and seen["given"].n_items == N_ITEMS - 1
    assert seen["given"].ratings < int(R.sum()) - int(R[0].sum()) - int(R[:, 1].sum()) + int(R[0, 1])


def test_too_large_a_broadcast_falls_back_to_mllib_and_says_why(spark, caplog):
    R = (random_ratings(seed=6) > 0).astype(float)
    # (30 users + 24 items) x rank 4 x 4 bytes = 864 bytes, above a 0.0001 MB (105 bytes) limit
    params = {"solver": "cg", "rank": 4, "maxIter": 2, "cgMaxBroadcastMb": 0.0001, "checkpointInterval": -1}
    with caplog.at_level(logging.WARNING, logger="batchrec.recipes.als"):
        model = train(spark, "user-personalization", events_of(spark, R), settings(), params=params)
    assert model.stats["solver_used"] == "mllib"
    assert "(30 users + 24 items) x rank 4" in model.stats["solver_fallback"]
    assert "cgMaxBroadcastMb=0.0001" in model.stats["solver_fallback"]
    assert any("training with MLlib's block solver instead" in r.getMessage() for r in caplog.records)
    assert model.artifacts["user_factors"].count() == N_USERS
    model.release()


def test_constant_regularization_cannot_fall_back(spark):
    R = (random_ratings(seed=6) > 0).astype(float)
    params = {"solver": "cg", "rank": 4, "regularization": "constant", "cgMaxBroadcastMb": 0.0001}
    with pytest.raises(UsageError, match="no regularization=constant; raise cgMaxBroadcastMb"):
        train(spark, "user-personalization", events_of(spark, R), settings(), params=params)


def test_plan_sizes_the_broadcast_of_both_sides():
    problem = als_cg.Plan(n_users=10_000_000, n_items=20_000, ratings=1, rank=64, limit_mb=2048)
    assert problem.broadcast_mb == pytest.approx(10_020_000 * 64 * 4 / 2**20) and not problem.fits
    assert "(10,000,000 users + 20,000 items) x rank 64 = 2,446 MB" in problem.reason
    assert als_cg.Plan(100, 20_000, 1, 64, 5).fits  # 4.9 MB
    assert not als_cg.Plan(100, 20_400, 1, 64, 5).fits  # 5.0 MB


@pytest.mark.parametrize("params, message", [
    ({"solver": "spark"}, r"solver='spark' .*expected one of cg, mllib"),
    ({"solver": "CG"}, r"solver='CG' .*expected one of cg, mllib"),
    ({"solver": 1}, r"solver=1 .*has type int; expected one of cg, mllib"),
    ({"solver": "cg", "regularization": "l2"}, r"regularization='l2' .*expected one of scaled, constant"),
    ({"solver": "mllib", "regularization": "constant"}, r"regularization='constant' needs solver=cg"),
    ({"nonnegative": True}, r"nonnegative=true needs solver=mllib"),  # the default solver is cg
    ({"solver": "cg", "nonnegative": True}, r"nonnegative=true needs solver=mllib"),
    ({"solver": "cg", "cgSteps": 0}, r"cgSteps=0 .*expected int >= 1"),
    ({"solver": "cg", "cgMaxBroadcastMb": -1}, r"cgMaxBroadcastMb=-1.0 .*expected float >= 0.0"),
    ({"cgSteps": 2.5}, r"cgSteps=2.5 .*expected int"),
    ({"solver": "cg", "cgKernel": "fortran"}, r"cgKernel='fortran' .*expected one of auto, numba, numpy"),
])
def test_bad_solver_parameters_are_rejected_with_the_valid_values(params, message):
    with pytest.raises(UsageError, match=message):
        resolve_params("user-personalization", Settings(), params)


def test_defaults_use_the_cg_solver_with_mllibs_scaled_regularization():
    params = resolve_params("user-personalization", Settings(), {})
    assert params["solver"] == als.CG and params["regularization"] == "scaled"
    assert set(catalogue.get("user-personalization").params) == set(params)

"""``batchrec generate``: write a deterministic synthetic dataset in Personalize's CSV format."""

from __future__ import annotations

import datetime as dt
import logging

from pyspark.sql import SparkSession

from batchrec.config import Settings
from batchrec.datasets.generate import generate_datasets, write_datasets
from batchrec.locations import KIND_DATASETS, Location, check_locations

log = logging.getLogger(__name__)


def run(
    spark: SparkSession,
    settings: Settings,
    run_date: dt.date,
    *,
    n_users: int,
    n_items: int,
    n_interactions: int,
    output: str,
    seed: int = 42,
    span_days: int = 90,
    clusters: int = 20,
) -> dict:
    """Generate the interactions, items and users datasets and their schemas under ``output``.

    The timestamps span ``span_days`` days ending at the end of ``run_date`` (UTC), so the same seed
    and run date give byte-identical files.

    Args:
        spark: the session.
        settings: loaded configuration (unused; every option is a command-line flag).
        run_date: last day of the generated span.
        n_users: users; n_items: items; n_interactions: interaction rows.
        output: folder or Hadoop URI receiving interactions/, items/, users/ and schemas/.
        seed: generator seed.
        span_days: days covered by the timestamps.
        clusters: hidden taste clusters.

    Returns:
        The summary: the sizes asked for, the seed and the paths written (see
        :func:`batchrec.datasets.generate.write_datasets`).

    Raises:
        UsageError: a size or parameter is out of range; ``output`` exists and is not a previous
            generated dataset (only interactions/, items/, users/, schemas/), or overlaps a
            configuration file.
    """
    check_locations(spark, [], [Location("--output", output, KIND_DATASETS)])
    datasets = generate_datasets(spark, n_users, n_items, n_interactions, seed=seed,
                                 span_days=span_days, clusters=clusters, end_date=run_date)
    written = write_datasets(datasets, output)
    for key, path in written.items():
        log.info("wrote %s to %s", key, path)
    return {"command": "generate", "run_date": run_date.isoformat(), "output": output,
            "users": n_users, "items": n_items, "interactions": n_interactions, "seed": seed,
            "span_days": span_days, "clusters": clusters, "paths": written}

"""Scoring: blocked top-k on the executors, exclusions of seen items, backfill, exploration."""

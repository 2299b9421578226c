"""Datasets: schemas, readers, validation with a rejects table, training-data preparation, sample data."""

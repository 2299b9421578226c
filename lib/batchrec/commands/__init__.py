"""One module per CLI command; each exposes ``run(spark, settings, run_date, **options)``."""

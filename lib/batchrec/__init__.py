"""batchrec: batch recommendations and user segments on your own Spark, in Amazon Personalize's formats."""

__version__ = "0.1.0"

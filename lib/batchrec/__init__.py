"""batchrec: batch recommendations and user segments on your own Spark, in Amazon Personalize's formats."""

from batchrec import zipimports as _zipimports

__version__ = "0.1.0"

# Every Spark worker that runs batchrec's code imports this package first: see batchrec.zipimports.
_zipimports.install()

"""batchrec: batch recommendations and user segments on your own Spark, in Amazon Personalize's formats."""

__version__ = "0.1.0"

from batchrec import zipimports as _zipimports  # noqa: E402  (after __version__, which setup.py reads)

# Every Spark worker that runs batchrec's code imports this package first: see batchrec.zipimports.
_zipimports.install()

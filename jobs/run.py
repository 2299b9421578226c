"""spark-submit entry for `batchrec run` (the nightly pipeline).

Run: ./spark-submit.sh run PIPELINE.toml --run-date D [--stage NAME] [options]
     (options as for `batchrec run --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys
from pathlib import Path

try:
    import batchrec  # noqa: F401 - on --py-files (spark-submit.sh) or installed
except ImportError:  # a checkout run as is (e.g. a Databricks Git folder): the package is in ../lib
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from batchrec.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))

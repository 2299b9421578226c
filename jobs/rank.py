"""spark-submit entry for `batchrec rank`.

Run: ./spark-submit.sh rank [options]   (options as for `batchrec rank --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["rank", *sys.argv[1:]]))

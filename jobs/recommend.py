"""spark-submit entry for `batchrec recommend`.

Run: ./spark-submit.sh recommend [options]   (options as for `batchrec recommend --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))

"""spark-submit entry for `batchrec segment`.

Run: ./spark-submit.sh segment [options]   (options as for `batchrec segment --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["segment", *sys.argv[1:]]))

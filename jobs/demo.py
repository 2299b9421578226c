"""spark-submit entry for `batchrec demo`.

Run: ./spark-submit.sh demo [options]   (options as for `batchrec demo --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))

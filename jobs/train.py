"""spark-submit entry for `batchrec train`.

Run: ./spark-submit.sh train [options]   (options as for `batchrec train --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))

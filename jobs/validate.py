"""spark-submit entry for `batchrec validate`.

Run: ./spark-submit.sh validate [options]   (options as for `batchrec validate --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))

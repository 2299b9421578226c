"""spark-submit entry for `batchrec evaluate`.

Run: ./spark-submit.sh evaluate [options]   (options as for `batchrec evaluate --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))

"""spark-submit entry for `batchrec related`.

Run: ./spark-submit.sh related [options]   (options as for `batchrec related --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["related", *sys.argv[1:]]))

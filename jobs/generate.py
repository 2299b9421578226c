"""spark-submit entry for `batchrec generate`.

Run: ./spark-submit.sh generate [options]   (options as for `batchrec generate --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))

"""spark-submit entry for `batchrec export-dynamodb`.

Run: ./spark-submit.sh export_dynamodb [options]   (options as for `batchrec export-dynamodb --help`)
The exit code is batchrec's: 0 success, 1 job or data failure, 2 usage or configuration error.
"""

import sys

from batchrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["export-dynamodb", *sys.argv[1:]]))

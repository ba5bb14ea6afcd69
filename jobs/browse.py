"""spark-submit entry point: the static browser of a release, or of a diff between two.

    spark-submit jobs/browse.py --config conf/paper.yaml --version 12 --out /dbfs/kale/browse/v12
    spark-submit jobs/browse.py --config conf/paper.yaml --from 11 --to 12 --out /dbfs/kale/diff

The same arguments as `kale browse` (kale_spark/cli/commands.py), on the active session.
"""

import sys

from kale_spark.cli import commands as cli

if __name__ == "__main__":
    raise SystemExit(cli.main(["browse", *sys.argv[1:]]))

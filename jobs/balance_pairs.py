"""spark-submit entry point for the class balancing stage.

    spark-submit --master spark://HOST:7077 jobs/balance_pairs.py --help

Takes the same options as `wit balance`; the master comes from spark-submit.
"""

import sys

from wit_builder.cli import app

if __name__ == "__main__":
    app(["balance", *sys.argv[1:]], prog_name="balance_pairs.py")

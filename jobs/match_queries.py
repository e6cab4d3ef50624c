"""spark-submit entry point for the query matching stage.

    spark-submit --master spark://HOST:7077 jobs/match_queries.py --help

Takes the same options as `wit match`; the master comes from spark-submit.
"""

import sys

from wit_builder.cli import app

if __name__ == "__main__":
    app(["match", *sys.argv[1:]], prog_name="match_queries.py")

"""spark-submit entry point for the whole curation (extract → match → balance) stage.

    spark-submit --master spark://HOST:7077 jobs/curate.py --help

Takes the same options as `wit curate`; the master comes from spark-submit.
"""

import sys

from wit_builder.cli import app

if __name__ == "__main__":
    app(["curate", *sys.argv[1:]], prog_name="curate.py")

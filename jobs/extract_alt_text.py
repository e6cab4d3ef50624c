"""spark-submit entry point for the extraction (WARC/WAT → English pairs) stage.

    spark-submit --master spark://HOST:7077 jobs/extract_alt_text.py --help

Takes the same options as `wit extract`; the master comes from spark-submit.
"""

import sys

from wit_builder.cli import app

if __name__ == "__main__":
    app(["extract", *sys.argv[1:]], prog_name="extract_alt_text.py")

"""spark-submit entry point for the extraction stage (WARC/WAT → English pairs).

    spark-submit --master spark://HOST:7077 jobs/extract.py --help

Takes the same options as `wit extract`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("extract")

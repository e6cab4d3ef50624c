"""spark-submit entry point for the final shards stage (deduplicated, numbered shards).

    spark-submit --master spark://HOST:7077 jobs/shards.py --help

Takes the same options as `wit shards`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("shards")

"""spark-submit entry point for the whole curation stage (extract → match → balance in one job).

    spark-submit --master spark://HOST:7077 jobs/curate.py --help

Takes the same options as `wit curate`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("curate")

"""spark-submit entry point for the eval-set overlap stage (copies of eval images removed).

    spark-submit --master spark://HOST:7077 jobs/overlap.py --help

Takes the same options as `wit overlap`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("overlap")

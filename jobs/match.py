"""spark-submit entry point for the query matching stage (pairs × query list → matched pairs).

    spark-submit --master spark://HOST:7077 jobs/match.py --help

Takes the same options as `wit match`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("match")

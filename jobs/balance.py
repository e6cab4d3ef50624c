"""spark-submit entry point for the class balancing stage (matched pairs → ≤ t pairs per entry).

    spark-submit --master spark://HOST:7077 jobs/balance.py --help

Takes the same options as `wit balance`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("balance")

"""spark-submit entry point for the query-list stage (Wikipedia + WordNet + pageviews).

    spark-submit --master spark://HOST:7077 jobs/querylist.py --help

Takes the same options as `wit querylist`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("querylist")

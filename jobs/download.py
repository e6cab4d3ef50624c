"""spark-submit entry point for the image download stage (pairs → webdataset shards).

    spark-submit --master spark://HOST:7077 jobs/download.py --help

Takes the same options as `wit download`; the master comes from spark-submit.
"""

from wit_builder.cli import run_job

if __name__ == "__main__":
    run_job("download")

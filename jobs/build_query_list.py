"""spark-submit entry point for the query-list stage.

    spark-submit --master spark://HOST:7077 jobs/build_query_list.py \
        --wiki-dump 'enwiki-*-pages-articles-multistream.xml.bz2' --out out/querylist

Takes the same options as `wit querylist`; the master comes from spark-submit.
"""

import sys

from wit_builder.cli import app

if __name__ == "__main__":
    app(["querylist", *sys.argv[1:]], prog_name="build_query_list.py")

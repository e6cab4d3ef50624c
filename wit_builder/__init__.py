"""WIT builder: reproduce the pipeline that built CLIP's WIT dataset.

The library holds pure logic, one subpackage or module per stage; `jobs/` holds thin
spark-submit entry points and `wit_builder.cli` the `wit` command.
"""

__version__ = "0.1.0"

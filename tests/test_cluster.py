"""`spark-submit` of a job against a standalone Spark master + worker on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.test_querylist_job import HAND_PAGES, write_dump

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def spark_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable,
               SPARK_LOG_DIR=str(tmp), SPARK_WORKER_DIR=str(tmp / "work"))
    env.pop("PYSPARK_GATEWAY_PORT", None)
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """Start a master and one 2-core worker; yield the master URL; stop both."""
    tmp = tmp_path_factory.mktemp("cluster")
    port, env = free_port(), spark_env(tmp)
    url = f"spark://127.0.0.1:{port}"
    master_log, worker_log = tmp / "master.log", tmp / "worker.log"
    procs = [subprocess.Popen(
        [BIN / "spark-class", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(port), "--webui-port", str(free_port())],
        env=env, stdout=master_log.open("w"), stderr=subprocess.STDOUT)]
    try:
        wait_for(lambda: "I have been elected leader" in master_log.read_text(), "master")
        procs.append(subprocess.Popen(
            [BIN / "spark-class", "org.apache.spark.deploy.worker.Worker", url,
             "--host", "127.0.0.1", "--cores", "2", "--memory", "2g",
             "--webui-port", str(free_port())],
            env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT))
        wait_for(lambda: "Successfully registered with master" in worker_log.read_text(),
                 "worker registration")
        yield url
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
    log = master_log.read_text()
    assert "Registering app wit-querylist" in log and "Registering app wit-curate" in log


def test_spark_submit_query_list_on_standalone_cluster(cluster, tmp_path):
    dump = write_dump(tmp_path / "hand.xml.bz2", HAND_PAGES)
    out = tmp_path / "out"
    cmd = [BIN / "spark-submit", "--master", cluster, "--conf", "spark.ui.enabled=false",
           str(REPO / "jobs" / "build_query_list.py"), "--wiki-dump", str(dump),
           "--out", str(out), "--wordnet", "none", "--min-count", "1000",
           "--set", "min_bigram_count=2", "--set", "min_pmi=2"]
    proc = subprocess.run(cmd, env=spark_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = pq.read_table(out / "entries.parquet").to_pylist()
    assert [r["entry"] for r in rows if r["source"] == "bigram"] == ["red fox"]
    assert (out / "_SUCCESS").is_file()


def test_spark_submit_curate_on_standalone_cluster(cluster, spark, tmp_path):
    """The whole curation via spark-submit, with a user LID model shipped to the workers,
    gives the same pairs as a local run."""
    from tests import warcs
    from wit_builder.curate.curate_job import CurateConfig, run
    from wit_builder.curate.lid import default_model_path

    model = tmp_path / "my-lid.ftz"
    model.write_bytes(Path(default_model_path()).read_bytes())
    entries = REPO / "query_lists" / "enwiki-fixture"
    args = ["--warc", str(warcs.WARC_DIR / "*"), "--entries", str(entries),
            "--lid-model", str(model), "--t", "2"]
    cmd = [BIN / "spark-submit", "--master", cluster, "--conf", "spark.ui.enabled=false",
           str(REPO / "jobs" / "curate.py"), *args, "--out", str(tmp_path / "cluster")]
    proc = subprocess.run(cmd, env=spark_env(tmp_path), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = run(CurateConfig(warc=[str(warcs.WARC_DIR / "*")], entries=entries,
                             lid_model=str(model), t=2, out=tmp_path / "local"), spark)
    on_cluster = pq.read_table(tmp_path / "cluster" / "pairs.parquet").sort_by("uid")
    assert on_cluster.num_rows > 0
    assert on_cluster.equals(pq.read_table(local.out_dir / "pairs.parquet").sort_by("uid"))

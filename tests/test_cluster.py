"""`spark-submit` of every `jobs/*.py` against a standalone Spark master + worker on
127.0.0.1.

The worker's Python has the project's dependencies but not `wit_builder` itself (a bare
venv that sees the test venv's site-packages through a path file, which Python does not
scan for the editable install's hook), so the jobs only work because `spark.get_spark`
ships the package to the executors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.builders import HAND_PAGES, REPO, write_dump

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


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python that imports the dependencies but not `wit_builder`."""
    root = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = str(root / "bin" / "python")
    probe = subprocess.run([python, "-c", "import pyarrow, pyspark; import wit_builder"],
                           capture_output=True, text=True, cwd=root, env=bare_env())
    assert "No module named 'wit_builder'" in probe.stderr, probe.stderr
    return python


def bare_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_GATEWAY_PORT", "PYSPARK_PYTHON")}
    return env


def spark_env(tmp: Path, worker_python: str) -> dict[str, str]:
    """The environment of the cluster daemons and of spark-submit: executors run
    `worker_python`, the driver this venv's Python."""
    return dict(bare_env(), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=worker_python,
                PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOG_DIR=str(tmp),
                SPARK_WORKER_DIR=str(tmp / "work"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, bare_python) -> Iterator[str]:
    """Start a master and one 2-core worker; yield the master URL; stop both."""
    tmp = tmp_path_factory.mktemp("cluster")
    port, env = free_port(), spark_env(tmp, bare_python)
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
    for stage in ("querylist", "extract", "match", "balance", "download", "shards",
                  "overlap"):
        assert f"Registering app wit-{stage}" in log, stage


def submit(cluster: str, python: str, job: str, *args: str, tmp: Path) -> None:
    """spark-submit `jobs/<job>.py` with `args` to the cluster; it must succeed."""
    cmd = [BIN / "spark-submit", "--master", cluster, "--conf", "spark.ui.enabled=false",
           str(REPO / "jobs" / f"{job}.py"), *args]
    proc = subprocess.run(cmd, env=spark_env(tmp, python), capture_output=True, text=True,
                          timeout=300, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "jobs").glob("*.py")))
def test_every_job_script_runs_its_own_stage(script):
    """Each `jobs/<stage>.py` is the thin spark-submit wrapper of `wit <stage>`."""
    import ast

    from typer.main import get_command

    from wit_builder.cli import app

    tree = ast.parse((REPO / "jobs" / script).read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "run_job"]
    stage = script.removesuffix(".py")
    assert [ast.literal_eval(call.args[0]) for call in calls] == [stage]
    assert stage in get_command(app).commands


def test_spark_submit_query_list_on_standalone_cluster(cluster, bare_python, tmp_path):
    dump = write_dump(tmp_path / "hand.xml.bz2", HAND_PAGES)
    out = tmp_path / "out"
    submit(cluster, bare_python, "querylist", "--wiki-dump", str(dump), "--out", str(out),
           "--wordnet", "none", "--min-count", "1000", "--set", "min_bigram_count=2",
           "--set", "min_pmi=2", tmp=tmp_path)
    rows = pq.read_table(out / "entries.parquet").to_pylist()
    assert [r["entry"] for r in rows if r["source"] == "bigram"] == ["red fox"]
    assert (out / "_SUCCESS").is_file()


def test_spark_submit_curation_jobs_on_standalone_cluster(cluster, bare_python, spark,
                                                          tmp_path):
    """extract → match → balance submitted one after the other, with a user LID model
    shipped to the workers, give the same pairs as a local `wit curate` run (which equals
    its three stages: test_curate_equals_the_three_stages; `jobs/curate.py` is the same
    wrapper as the others: test_every_job_script_runs_its_own_stage)."""
    from tests import warcs
    from wit_builder.curate.configs import CurateConfig
    from wit_builder.curate.curate_job import run
    from wit_builder.curate.lid import default_model_path
    from wit_builder.curate.pairs import PAIRS_FILE

    model = tmp_path / "my-lid.ftz"
    model.write_bytes(Path(default_model_path()).read_bytes())
    entries = str(REPO / "query_lists" / "enwiki-fixture")
    warc = ["--warc", str(warcs.WARC_DIR / "*"), "--lid-model", str(model)]
    jobs = [("extract", *warc),
            ("match", "--pairs", str(tmp_path / "extract"), "--entries", entries),
            ("balance", "--pairs", str(tmp_path / "match"), "--entries", entries, "--t", "2")]
    for job, *args in jobs:
        submit(cluster, bare_python, job, *args, "--out", str(tmp_path / job), tmp=tmp_path)
    local = run(CurateConfig(warc=[str(warcs.WARC_DIR / "*")], entries=entries,
                             lid_model=str(model), t=2, out=tmp_path / "local"), spark)
    expected = pq.read_table(local.out_dir / PAIRS_FILE).sort_by("uid")
    assert expected.num_rows > 0
    assert pq.read_table(tmp_path / "balance" / PAIRS_FILE).sort_by("uid").equals(expected)


def test_spark_submit_download_and_shards_on_standalone_cluster(cluster, bare_python, spark,
                                                                tmp_path):
    """Images fetched by executors (guard installed there, 127.0.0.1 allowed), then
    deduplicated: the same shards as a local run."""
    from tests.imageserver import COPIES, LOOPBACK, PHOTOS, ImageServer, write_pairs
    from wit_builder.images import download_job, shards_job
    from wit_builder.images.configs import DownloadConfig, ShardsConfig

    server = ImageServer()
    try:
        paths = [f"/photo/{n}.{('jpg', 'png', 'webp', 'gif')[i % 4]}"
                 for i, n in enumerate(PHOTOS[:6])] + list(COPIES)[:2] + ["/missing.jpg"]
        pairs = write_pairs(tmp_path / "balance", [server.url + p for p in paths])
        submit(cluster, bare_python, "download", "--pairs", str(pairs), "--out",
               str(tmp_path / "download"), "--allow-network", LOOPBACK[0],
               "--samples-per-shard", "4", tmp=tmp_path)
        local = download_job.run(DownloadConfig(pairs=pairs, out=tmp_path / "local-download",
                                                allow_network=LOOPBACK, samples_per_shard=4),
                                 spark)
    finally:
        server.close()
    submit(cluster, bare_python, "shards", "--images", str(tmp_path / "download"), "--out",
           str(tmp_path / "shards"), tmp=tmp_path)
    reference = shards_job.run(ShardsConfig(images=local.out_dir, out=tmp_path / "local"),
                               spark)
    columns = ["uid", "shard", "key", "sha256", "phash"]
    on_cluster = pq.read_table(tmp_path / "shards" / "manifest.parquet", columns=columns)
    expected = pq.read_table(reference.out_dir / "manifest.parquet", columns=columns)
    assert on_cluster.sort_by("uid").equals(expected.sort_by("uid"))
    assert on_cluster.num_rows == 6  # 6 photos; 2 copies removed, 1 missing
    overlap_on_cluster(cluster, bare_python, spark, tmp_path, reference.out_dir)


def overlap_on_cluster(cluster: str, python: str, spark, tmp_path: Path, shards: Path) -> None:
    """`jobs/overlap.py` on the final shards against an ImageFolder holding two of the
    photos: the same matches and filtered shards as a local run."""
    from tests.imageserver import PHOTOS, photo
    from wit_builder.overlap import overlap_job
    from wit_builder.overlap.configs import OverlapConfig

    for name in PHOTOS[:2]:
        (tmp_path / "evalset" / name).mkdir(parents=True)
        photo(name).convert("RGB").save(tmp_path / "evalset" / name / "0.png")
    args = ["--shards", f"{shards}/*.tar", "--eval", f"imagefolder:{tmp_path / 'evalset'}"]
    submit(cluster, python, "overlap", *args, "--out", str(tmp_path / "overlap"), tmp=tmp_path)
    local = overlap_job.run(OverlapConfig(shards=f"{shards}/*.tar", out=tmp_path / "o-local",
                                          eval=[f"imagefolder:{tmp_path / 'evalset'}"]), spark)
    on_cluster = pq.read_table(tmp_path / "overlap" / "overlap.parquet")
    assert on_cluster.equals(pq.read_table(local.out_dir / "overlap.parquet"))
    assert sorted(on_cluster.column("eval_id").to_pylist()) == sorted(
        f"{name}/0.png" for name in PHOTOS[:2])
    sizes = (tmp_path / "overlap" / "filtered" / "sizes.json").read_text()
    assert sizes == (local.out_dir / "filtered" / "sizes.json").read_text()

"""Hostile and damaged inputs of the image stages, through the CLI: no sample lost
without a count, none doubled, no silent wrong result."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.imageserver import LOOPBACK, PHOTOS, ImageServer, write_pairs
from wit_builder.cli import app
from wit_builder.curate.pairs import PAIRS_FILE
from wit_builder.outputs import MARKER


def cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout + result.stderr


def flat(text: str) -> str:
    return "".join(text.split())


def stats_of(out: Path) -> dict:
    import json

    return json.loads((out / "stats.json").read_text())


@pytest.fixture(scope="module")
def download(spark, tmp_path_factory):
    """12 distinct photos downloaded through `wit download`, from pairs that also hold
    one pair twice (the same uid), a uid that is a path, a URL with credentials and a
    missing URL."""
    root = tmp_path_factory.mktemp("hardening")
    server = ImageServer()
    try:
        urls = [f"{server.url}/photo/{name}.{('jpg', 'png', 'webp', 'gif')[i % 4]}"
                for i, name in enumerate(PHOTOS[:12])]
        pairs = write_pairs(root / "pairs", urls)
        part = pairs / PAIRS_FILE / "part-0.parquet"
        table = pq.read_table(part)
        evil = table.slice(1, 1).set_column(0, "uid", pa.array(["../../etc/passwd"]))
        secret = table.slice(2, 1).set_column(0, "uid", pa.array(["f" * 24])).set_column(
            1, "url", pa.array([urls[2].replace("://", "://user:secret@")]))
        no_url = table.slice(3, 1).set_column(0, "uid", pa.array(["e" * 24])).set_column(
            1, "url", pa.array([None], pa.string()))
        pq.write_table(pa.concat_tables([table, table.slice(0, 1), evil, secret, no_url]),
                       part)
        code, out = cli("download", "--pairs", pairs, "--out", root / "download",
                        "--allow-network", LOOPBACK[0], "--samples-per-shard", 5,
                        "--master", "local[2]")
    finally:
        server.close()
    assert code == 0, out
    return root / "download"


def test_duplicate_and_path_uids_and_bad_urls_are_counted_not_fetched(download):
    stats = stats_of(download)
    assert stats["rows_in"] == 16 and stats["rows_out"] == 12
    assert stats["drops"] == {"bad_uid": 1, "bad_url": 2, "duplicate_uid": 1}
    for shard in download.glob("*.tar"):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
        assert len(names) == len(set(names))
        assert not any(".." in n or "/" in n for n in names)


def shards_of(images: Path, out: Path) -> tuple[int, str]:
    return cli("shards", "--images", images, "--out", out, "--samples-per-shard", 4,
               "--master", "local[2]")


def variant(download: Path, root: Path) -> tuple[Path, Path]:
    """A copy of the download output to damage, and its first shard."""
    copy = root / "images"
    shutil.copytree(download, copy)
    return copy, sorted(copy.glob("*.tar"))[0]


def members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_a_truncated_tar_keeps_the_samples_before_the_cut(download, tmp_path):
    images, first = variant(download, tmp_path)
    listed = members(first)
    cut = listed[7][0].offset_data + 100  # in the padding of the third sample's txt
    first.write_bytes(first.read_bytes()[:cut])
    code, out = shards_of(images, tmp_path / "out")
    assert code == 0, out
    stats = stats_of(tmp_path / "out")
    assert stats["drops"] == {"unreadable_tar": 1}
    assert stats["rows_out"] == 12 - 5 + 2  # the first tar's two samples before the cut
    assert stats["input_mismatch"] == -3
    assert "damaged" in flat(out) and "wrote12" in flat(out)


def test_a_corrupt_header_mid_tar_is_skipped_counted_and_said(download, tmp_path):
    """A member's first header block overwritten (img2dataset writes a PAX header before
    each member): the reader skips to the next readable header instead of ending there,
    so no sample after it is lost, and the damage is counted and shown."""
    images, first = variant(download, tmp_path)
    data = bytearray(first.read_bytes())
    header = members(first)[4][0].offset  # the second sample's second member
    data[header:header + 512] = (b"\x7f garbage header " * 40)[:512]
    first.write_bytes(bytes(data))
    code, out = shards_of(images, tmp_path / "out")
    assert code == 0, out
    stats = stats_of(tmp_path / "out")
    assert stats["drops"] == {"unreadable_member": 1}
    assert stats["rows_out"] == 12  # every sample after the damage is there
    assert "1,024bytesskipped" in flat(out)


def test_the_same_key_twice_is_one_sample_counted(download, tmp_path):
    images, first = variant(download, tmp_path)
    listed = members(first)
    with tarfile.open(first, "w") as tar:
        for info, data in listed + listed[:3]:  # the first sample again, at the end
            tar.addfile(info, io.BytesIO(data))
    code, out = shards_of(images, tmp_path / "out")
    assert code == 0, out
    stats = stats_of(tmp_path / "out")
    assert stats["drops"] == {"duplicate_uid": 1} and stats["rows_out"] == 12


def test_a_sample_without_caption_is_counted(download, tmp_path):
    images, first = variant(download, tmp_path)
    listed = [(m, d) for m, d in members(first) if m.name != listed_txt(first)]
    with tarfile.open(first, "w") as tar:
        for info, data in listed:
            tar.addfile(info, io.BytesIO(data))
    code, out = shards_of(images, tmp_path / "out")
    assert code == 0, out
    assert stats_of(tmp_path / "out")["drops"] == {"missing_member": 1}


def listed_txt(shard: Path) -> str:
    return next(m.name for m, _ in members(shard) if m.name.endswith(".txt"))


def test_shards_needs_a_finished_download(download, tmp_path):
    images, _ = variant(download, tmp_path)
    (images / MARKER).unlink()  # what a killed run's work dir looks like
    code, out = shards_of(images, tmp_path / "out")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "is not a finished `wit download` output" in out
    assert not (tmp_path / "out").exists()


def one_line(code: int, out: str, expected_code: int, text: str) -> None:
    assert code == expected_code, out
    assert len(out.strip().splitlines()) == 1, out
    assert text in out, out


def test_retry_failed_refuses_a_changed_image_setting(download):
    code, out = cli("download", "--pairs", download.parent / "pairs", "--out", download,
                    "--retry-failed", "--image-size", 64, "--master", "local[2]")
    one_line(code, out, 2, "image_size 256 → 64")


def test_impossible_thresholds_are_refused_before_any_work(download, tmp_path):
    shards = f"{download}/*.tar"
    for args, text in ((["--threshold", -1], "threshold -1.0 is impossible for phash"),
                       (["--threshold", 70], "threshold 70.0 is impossible for phash"),
                       (["--set", "thresholds.digits=64"], "thresholds.digits 64.0 would "
                        "match every image"),
                       (["--set", "near=-1"], "near -1")):
        code, out = cli("overlap", "--shards", shards, "--out", tmp_path / "o", *args)
        one_line(code, out, 2, text)
    assert not (tmp_path / "o").exists()


def test_a_misspelled_stage_in_pipeline_set_is_refused(tmp_path):
    config = tmp_path / "line.yaml"
    config.write_text("download:\n  pairs: nowhere\nreport:\n  gallery: 2\n")
    code, out = cli("pipeline", "--config", config, "--out", tmp_path / "o",
                    "--set", "reprot.gallery=0")
    one_line(code, out, 2, "has no 'reprot' stage")
    code, out = cli("pipeline", "--config", config, "--out", tmp_path / "o",
                    "--set", "shards.samples_per_shard=5")
    one_line(code, out, 2, "has no 'shards' stage")
    assert not (tmp_path / "o").exists()


def test_imagefolder_classes_with_spaces_and_link_loops_load_each_image_once(download,
                                                                            tmp_path):
    """`wit overlap` against an ImageFolder whose class folders are named with a space
    and an underscore, one holding a symlink back to the root: each image counts once."""
    from PIL import Image

    root = tmp_path / "evalset"
    for folder, n in (("sea lion", 3), ("red_fox", 2)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(root / folder / f"{i}.png")
    (root / "sea lion" / "loop").symlink_to(root, target_is_directory=True)
    (root / "red_fox" / "again.png").symlink_to(root / "red_fox" / "0.png")
    out = tmp_path / "o"
    code, text = cli("overlap", "--shards", f"{download}/*.tar", "--eval",
                     f"imagefolder:{root}", "--out", out, "--master", "local[2]")
    assert code == 0, text
    import json

    sets = json.loads((out / "eval_sets.json").read_text())
    assert sets["evalset"]["eval_images"] == 5


def test_config_files_of_the_wrong_shape_are_one_line(tmp_path):
    laughs = "demo:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
        f"  l{i}: &l{i} [*l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, *l{i - 1}, "
        f"*l{i - 1}, *l{i - 1}, *l{i - 1}]\n" for i in range(1, 10))  # 9^9 strings
    cases = {"download: [1, 2]\n": "section 'download' must be a mapping",
             "out: 5\ndownload: {}\n": "out must be a directory name",
             laughs + "download:\n  pairs: *l9\n": "pairs"}
    for text, expected in cases.items():
        config = tmp_path / "line.yaml"
        config.write_text(text)
        code, out = cli("pipeline", "--config", config, "--out", tmp_path / "o")
        one_line(code, out, 2, expected)
        assert len(out) < 1000
    config.write_text("demo:\n  port: abc\ndownload: {}\n")
    code, out = cli("demo", "--config", config, "--out", tmp_path / "o")
    one_line(code, out, 2, "demo.port must be a port number, got 'abc'")


def test_overlap_over_pools_whose_shards_share_names(download, tmp_path):
    """Two pools both named 00000.tar…: every sample is scanned once, none skipped as
    done, and the filtered copies keep apart (`tarshards.shard_ids`)."""
    import json

    for pool in ("a", "b"):
        (tmp_path / pool).mkdir()
        for tar in download.glob("*.tar"):
            shutil.copy(tar, tmp_path / pool / tar.name)
    out = tmp_path / "o"
    code, text = cli("overlap", "--shards", f"{tmp_path}/a/*.tar::{tmp_path}/b/*.tar",
                     "--out", out, "--master", "local[2]")
    assert code == 0, text
    stats = stats_of(out)
    assert stats["rows_in"] == 24
    sizes = json.loads((out / "filtered" / "sizes.json").read_text())
    assert sorted(sizes) == sorted(f"{p}_{t.name}" for p in "ab" for t in download.glob("*.tar"))
    assert sum(sizes.values()) == 24


def test_overlap_report_runs_from_another_directory(download, tmp_path, monkeypatch):
    """An overlap run given relative paths records them absolute: its report, made from
    another working directory, reads the same shards and eval set."""
    from PIL import Image

    work = tmp_path / "here"
    (work / "evalset" / "cats").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 90, 40)).save(work / "evalset" / "cats" / "0.png")
    pool = Path(shutil.copytree(download, work / "pool"))
    monkeypatch.chdir(work)
    code, out = cli("overlap", "--shards", "pool/*.tar", "--eval", "imagefolder:evalset",
                    "--out", "o", "--master", "local[2]")
    assert code == 0, out
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "pool").mkdir(parents=True)  # a same-named folder that must not be read
    monkeypatch.chdir(elsewhere)
    code, out = cli("overlap", "report", "--overlap", work / "o", "--out", "r")
    assert code == 0, out
    assert (elsewhere / "r" / "report.html").is_file()
    import json

    marker = json.loads((work / "o" / MARKER).read_text())
    assert marker["config"]["shards"] == f"{pool}/*.tar"
    assert marker["config"]["eval"] == [f"imagefolder:{work / 'evalset'}"]
    # the eval set changes after the overlap run: its indices would name other images
    Image.new("RGB", (32, 32), (10, 90, 40)).save(work / "evalset" / "cats" / "00.png")
    code, out = cli("overlap", "report", "--overlap", work / "o", "--out", "r2")
    assert code == 2, out
    assert "changed since the overlap run" in out and len(out.strip().splitlines()) == 1
    assert not (elsewhere / "r2").exists()


def test_spark_log_lines_stay_out_of_the_terminal(tmp_path):
    """A Spark stage that fails: the terminal shows the one error line, and Spark's and
    the JVM's own lines (hostname, native-hadoop, default-profile notices) go to a file
    in WIT_LOG_DIR."""
    import subprocess
    import sys

    from tests.builders import repo_env

    (tmp_path / "j.warc").write_text("not a warc\n")
    logs = tmp_path / "logs"
    done = subprocess.run([sys.executable, "-m", "wit_builder.cli", "extract", "--warc",
                           tmp_path / "j.warc", "--out", tmp_path / "o", "--master",
                           "local[1]"], env=repo_env(WIT_LOG_DIR=str(logs)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: no WARC/WAT record in any of the 1 input file(s): {tmp_path / 'j.warc'}"]
    assert done.stdout == ""
    (log,) = logs.glob("spark-*.log")
    assert "log4j" in log.read_text() or "WARN" in log.read_text()


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path):
    """`wit download` onto a filesystem that fills up: one line, exit 1 (img2dataset's
    tracebacks go to the log file); with room again, the same command resumes."""
    import subprocess
    import sys

    from tests.builders import repo_env

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a tmpfs mount (root)")
    server = ImageServer()
    try:
        urls = [f"{server.url}/photo/{name}.{('jpg', 'png', 'webp', 'gif')[i % 4]}?{n}"
                for n in range(3) for i, name in enumerate(PHOTOS)]
        pairs = write_pairs(tmp_path / "pairs", urls)
        args = [sys.executable, "-m", "wit_builder.cli", "download", "--pairs", pairs,
                "--out", small / "d", "--allow-network", LOOPBACK[0],
                "--samples-per-shard", 6, "--master", "local[1]"]
        env = repo_env(WIT_LOG_DIR=str(tmp_path / "logs"))
        full = subprocess.run([str(a) for a in args], env=env, capture_output=True,
                              text=True, timeout=300)
        assert full.returncode == 1, full.stderr
        (line,) = full.stderr.strip().splitlines()
        assert line.startswith("error: No space left on device"), line
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        rerun = subprocess.run([str(a) for a in args], env=env, capture_output=True,
                               text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert stats_of(small / "d")["rows_out"] == len(urls)
    finally:
        server.close()
        subprocess.run(["umount", "-l", str(small)], capture_output=True)


def test_finished_pieces_of_another_config_are_never_dropped_silently(download, tmp_path):
    """An unfinished run's work dir with finished shards, then a run with another image
    setting: refused (one line naming the setting and the dir); --overwrite drops it.
    Network patience (timeout, deadline, retries) is not part of the hash: changing it
    resumes the same work dir."""
    import json

    from wit_builder.config import config_hash
    from wit_builder.images.configs import DownloadConfig

    out = tmp_path / "d"
    work = tmp_path / ".d.work-0123456789abcdef"
    work.mkdir()
    (work / "00000.tar").write_bytes(b"a finished shard")
    (work / ".config.json").write_text(json.dumps({"image_size": 64}))
    args = ["download", "--pairs", download.parent / "pairs", "--out", out,
            "--allow-network", LOOPBACK[0], "--master", "local[2]"]
    code, text = cli(*args)
    one_line(code, text, 2, "image_size 64 → 256")
    assert str(work) in flat(text) and work.is_dir()
    code, text = cli(*args, "--overwrite")
    assert code == 0, text
    assert not work.exists() and (out / MARKER).is_file()
    base = DownloadConfig(pairs=tmp_path, out=out)
    patient = base.model_copy(update={"timeout": 60.0, "deadline": 600.0, "retries": 5})
    assert config_hash("download", 1, base, []) == config_hash("download", 1, patient, [])


def test_hostile_servers_end_in_their_reason_within_the_deadline(spark, tmp_path):
    """A tarpit dripping 16 B/s, an endless body, a body declared at 10 GiB, a redirect
    loop and a redirect to file:// each end as their reason; URLs with a space or an
    umlaut in the path are fetched (encoded as browsers do)."""
    import time

    from tests.imageserver import HOSTILE_ROUTES, samples

    server = ImageServer()
    try:
        urls = [server.url + path for path in HOSTILE_ROUTES]
        started = time.monotonic()
        code, out = cli("download", "--pairs", write_pairs(tmp_path / "pairs", urls),
                        "--out", tmp_path / "d", "--allow-network", LOOPBACK[0],
                        "--deadline", 3, "--retries", 0, "--max-bytes", 4 * 2**20,
                        "--master", "local[2]")
        took = time.monotonic() - started
    finally:
        server.close()
    assert code == 0, out
    failures = {r["url"]: r["reason"] for r in
                pq.read_table(tmp_path / "d" / "failures").to_pylist()}
    kept = {s["json"]["url"] for s in samples(tmp_path / "d").values()}
    for path, expected in HOSTILE_ROUTES.items():
        url = server.url + path
        assert ("success" if url in kept else failures[url]) == expected, path
    assert took < 60  # the tarpit would hold its thread forever without the deadline


@pytest.mark.parametrize("distributor", ["pyspark", "multiprocessing"])
def test_shard_watchdog_cuts_off_what_the_request_deadline_lets_run(distributor, spark,
                                                                     tmp_path):
    """A tarpit under a request deadline far too long: the shard's own deadline cuts it
    off, the row is a ``timeout`` saying so, the rest of the shard is kept and the run
    finishes, on Spark and on the local process pool."""
    import time

    from tests.imageserver import samples

    server = ImageServer()
    try:
        urls = [server.url + "/tarpit.jpg", server.url + "/cmyk.jpg", server.url + "/alpha.png"]
        started = time.monotonic()
        code, out = cli("download", "--pairs", write_pairs(tmp_path / "pairs", urls),
                        "--out", tmp_path / "d", "--allow-network", LOOPBACK[0],
                        "--deadline", 3600, "--shard-deadline", 4, "--retries", 0,
                        "--distributor", distributor, "--processes", 1,
                        "--master", "local[2]")
        took = time.monotonic() - started
    finally:
        server.close()
    assert code == 0, out
    failed = pq.read_table(tmp_path / "d" / "failures").to_pylist()
    assert [(r["url"], r["reason"]) for r in failed] == [(urls[0], "timeout")]
    assert "shard's deadline of 4 s" in failed[0]["error_message"]
    assert {s["json"]["url"] for s in samples(tmp_path / "d").values()} == set(urls[1:])
    assert took < 120


def test_overlap_reconciles_with_the_pool_sizes(download, tmp_path):
    """A pool whose sizes.json promises a sample more than its tars hold: the overlap
    stats say so (a notice and input_mismatch)."""
    import json

    pool = tmp_path / "pool"
    pool.mkdir()
    sizes = {}
    for tar in sorted(download.glob("*.tar")):
        shutil.copy(tar, pool / tar.name)
        with tarfile.open(tar) as opened:
            sizes[tar.name] = len({m.name.partition(".")[0] for m in opened.getmembers()})
    sizes[next(iter(sizes))] += 1
    (pool / "sizes.json").write_text(json.dumps(sizes))
    code, text = cli("overlap", "--shards", f"{pool}/*.tar", "--out", tmp_path / "o",
                     "--master", "local[2]")
    assert code == 0, text
    (pool / "sizes.json").unlink()  # wrong on purpose: not one of the shards we wrote
    assert stats_of(tmp_path / "o")["input_mismatch"] == -1
    assert "thepool'ssizes.jsonsay13" in flat(text)


def test_ctrl_c_during_overlap_is_one_line(download, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while overlap
    scores and collects: one line, exit 130, whichever process the signal finds first
    (Spark's Python workers print their own interruption into the log, not here)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.builders import repo_env

    out = tmp_path / "o"
    args = [sys.executable, "-m", "wit_builder.cli", "overlap", "--shards",
            f"{download}/*.tar", "--out", str(out), "--master", "local[2]"]
    proc = subprocess.Popen(args, env=repo_env(WIT_LOG_DIR=str(tmp_path / "logs")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline \
            and not list(tmp_path.glob(".o.work-*/neighbours/*.parquet")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal")
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == [
        "error: interrupted; finished outputs are kept and a rerun resumes"], err

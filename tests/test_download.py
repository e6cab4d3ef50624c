"""`wit download` against a real HTTP server on 127.0.0.1 serving real photos and every
way a download fails (`tests/imageserver.py`)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from tests.builders import repo_env, wait_for_event
from tests.imageserver import (
    LOOPBACK,
    ROUTES,
    SLOW_SECONDS,
    ImageServer,
    samples,
    write_pairs,
)
from wit_builder.images import download_job, failures, fetch, plan
from wit_builder.images.configs import DownloadConfig


@pytest.fixture(scope="module")
def server():
    srv = ImageServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def downloaded(server, spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("download")
    urls = [server.url + path for path in ROUTES]
    cfg = DownloadConfig(pairs=write_pairs(root / "balance", urls), out=root / "download",
                         allow_network=LOOPBACK, timeout=1.5, samples_per_shard=8)
    return download_job.run(cfg, spark), urls


def test_every_row_ends_in_a_shard_or_in_failures_with_its_reason(downloaded, server):
    result, urls = downloaded
    out = result.out_dir
    failures = {r["url"]: r for r in pq.read_table(out / "failures").to_pylist()}
    kept = samples(out)
    kept_urls = {s["json"]["url"] for s in kept.values()}
    for path, expected in ROUTES.items():
        url = server.url + path
        got = "success" if url in kept_urls else failures[url]["reason"]
        assert got == expected, (path, failures.get(url))
    assert not kept_urls & set(failures)  # exactly one place each
    assert len(kept) + len(failures) == len(urls)
    stats = result.marker["stats"]
    assert stats["rows_in"] == len(urls) and stats["rows_out"] == len(kept)
    assert stats["rows_in"] - sum(stats["drops"].values()) == stats["rows_out"]
    assert failures[server.url + "/missing.jpg"]["http_status"] == 404
    assert server.requests["/flaky.jpg"] == 2  # a 500, retried, then the image
    assert len(list(out.glob("*_stats.json"))) == stats["shards"] == 4


def test_samples_are_upright_rgb_resized_and_carry_the_pair(downloaded, server):
    result, _ = downloaded
    by_url = {s["json"]["url"]: s for s in samples(result.out_dir).values()}
    rotated = by_url[server.url + "/rotated.jpg"]
    meta = rotated["json"]
    assert (meta["original_width"], meta["original_height"]) == (400, 600)  # upright
    assert (meta["width"], meta["height"]) == (256, 384)  # short side 256
    cmyk = Image.open(io.BytesIO(by_url[server.url + "/cmyk.jpg"]["jpg"]))
    assert cmyk.mode == "RGB" and min(cmyk.size) == 256
    deep = np.asarray(Image.open(io.BytesIO(by_url[server.url + "/deep16.png"]["jpg"])))
    assert deep.shape[2] == 3 and deep.max() > 200  # 16-bit scaled to 8, not clipped dark
    alpha = np.asarray(Image.open(io.BytesIO(by_url[server.url + "/alpha.png"]["jpg"])))
    assert alpha[2, 2].min() > 240  # the transparent corner is white
    small = by_url[server.url + "/photo/colorwheel.jpg"]["json"]
    assert min(small["width"], small["height"]) == 256
    assert meta["uid"] and meta["page_url"].startswith("http://example.com/")
    assert meta["entry_ids"] and meta["keep_prob"] == 1.0
    assert rotated["txt"] == "a picture from rotated.jpg" and meta["caption"] == rotated["txt"]
    assert len(meta["sha256"]) == 64


def test_private_addresses_and_other_schemes_are_refused_by_default(server, tmp_path):
    """No --allow-network: every spelling of 127.0.0.1 is refused on the address it
    resolves to, and the server never sees a request (multiprocessing workers)."""
    port = server.port
    urls = [f"http://127.0.0.1:{port}/photo/astronaut.jpg",
            f"http://localhost:{port}/photo/chelsea.png",
            f"http://2130706433:{port}/photo/coffee.webp",
            f"http://0x7f.1:{port}/photo/rocket.gif",
            f"http://[::ffff:127.0.0.1]:{port}/photo/camera.png",
            "file:///etc/hostname", "ftp://127.0.0.1/x.jpg"]
    before = sum(server.requests.values())
    cfg = DownloadConfig(pairs=write_pairs(tmp_path / "balance", urls), out=tmp_path / "d",
                         distributor="multiprocessing", processes=2, timeout=2)
    result = download_job.run(cfg)
    reasons = {r["url"]: r["reason"] for r in
               pq.read_table(result.out_dir / "failures").to_pylist()}
    assert reasons == {u: "blocked_address" if u.startswith("http") else "blocked_scheme"
                       for u in urls}
    assert sum(server.requests.values()) == before
    assert result.marker["stats"]["rows_out"] == 0


def test_killed_download_resumes_keeping_finished_shards(tmp_path):
    """SIGKILL while shard 1 waits on a held request; the rerun keeps shard 0 as it was,
    redoes the others, and every pair is in exactly one place."""
    server = ImageServer(hold="/photo/coins.png")
    try:
        urls = [server.url + p for p in ROUTES if ROUTES[p] == "success"]
        pairs = write_pairs(tmp_path / "balance", urls)
        args = [sys.executable, "-m", "wit_builder.cli", "download", "--pairs", str(pairs),
                "--out", str(tmp_path / "download"), "--allow-network", LOOPBACK[0],
                "--samples-per-shard", "5", "--master", "local[1]", "--threads", "2"]
        proc = subprocess.Popen(args, env=repo_env(), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_event(server.arrived, proc)
        work = next(tmp_path.glob(".download.work-*"))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        finished = {p.name for p in work.glob("*_stats.json")}
        kept = {p.name: p.stat().st_mtime_ns for p in work.glob("*.tar")
                if f"{p.stem}_stats.json" in finished}
        assert set(kept) == {"00000.tar"}  # one task at a time: shard 0 done, 1 held
        server.release()
        subprocess.run(args, env=repo_env(), check=True, capture_output=True)
        out = tmp_path / "download"
        assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
        got = samples(out)
        assert sorted(s["json"]["url"] for s in got.values()) == sorted(urls)
        assert not list(tmp_path.glob(".download.work-*"))
    finally:
        server.close()


@pytest.mark.parametrize("distributor", ["pyspark", "multiprocessing"])
def test_retry_failed_fetches_only_transient_failures(distributor, downloaded, server, spark,
                                                      tmp_path):
    """The timed-out image is fetched again (with a longer timeout) into a new shard;
    permanent failures (404, refused, opted out...) are not asked for again. On Spark
    (a semi-join, failure files rewritten by tasks) and on the local process pool."""
    result, _ = downloaded
    out = tmp_path / "download"
    shutil.copytree(result.out_dir, out)
    before = dict(server.requests)
    cfg = DownloadConfig(pairs=result.out_dir.parent / "balance", out=out,
                         allow_network=LOOPBACK, timeout=SLOW_SECONDS + 3,
                         samples_per_shard=8, retry_failed=True, distributor=distributor,
                         processes=2)
    reasons_before = pq.read_table(out / "failures").column("reason").to_pylist()
    retried = download_job.run(cfg, spark)
    failures = {r["url"] for r in pq.read_table(out / "failures").to_pylist()}
    assert server.url + "/slow.jpg" not in failures
    assert len(failures) == sum(1 for v in ROUTES.values() if v != "success") - 1
    asked = {p: n - before.get(p, 0) for p, n in server.requests.items() if n != before.get(p)}
    assert asked == {"/slow.jpg": 1}
    assert (out / "00004.tar").is_file() and (out / "00004_stats.json").is_file()
    stats = retried.marker["stats"]
    assert stats["rows_out"] == result.marker["stats"]["rows_out"] + 1
    assert stats["rows_in"] - sum(stats["drops"].values()) == stats["rows_out"]
    assert len(samples(out)) == stats["rows_out"]
    reasons = pq.read_table(out / "failures").column("reason").to_pylist()
    assert sorted([*reasons, "timeout"]) == sorted(reasons_before)
    assert not list(tmp_path.glob(".download.retry-*"))
    again = download_job.run(cfg, spark)  # nothing transient left
    assert again.status == "skipped"


class Killed(BaseException):
    """Stands for a SIGKILL at one point of a run (nothing may catch it)."""


@pytest.mark.parametrize("distributor", ["pyspark", "multiprocessing"])
def test_retry_stopped_while_moving_in_is_finished_by_the_rerun(
        distributor, downloaded, server, spark, tmp_path, monkeypatch):
    """A retry stopped after its new shards moved into the output, before the failure
    files did: the rerun finishes the move and amends the stats, and does not fetch the
    rows again (they would be in two shards)."""
    result, _ = downloaded
    out = tmp_path / "download"
    shutil.copytree(result.out_dir, out)
    cfg = DownloadConfig(pairs=result.out_dir.parent / "balance", out=out,
                         allow_network=LOOPBACK, timeout=SLOW_SECONDS + 3,
                         samples_per_shard=8, retry_failed=True, distributor=distributor,
                         processes=2)
    move = fetch.move_shards

    def move_then_die(src, dst, ids):
        move(src, dst, ids)
        raise Killed

    monkeypatch.setattr(fetch, "move_shards", move_then_die)
    before = server.requests.get("/slow.jpg", 0)
    with pytest.raises(Killed):
        download_job.run(cfg, spark)
    monkeypatch.setattr(fetch, "move_shards", move)
    assert (out / "00004.tar").is_file()  # the state a kill there leaves
    assert "timeout" in pq.read_table(out / "failures").column("reason").to_pylist()
    rerun = download_job.run(cfg, spark)
    assert rerun.status == "ran" and server.requests["/slow.jpg"] == before + 1
    assert not (out / "00005.tar").exists() and not list(tmp_path.glob(".download.retry-*"))
    stats = rerun.marker["stats"]
    assert stats["rows_out"] == result.marker["stats"]["rows_out"] + 1 == len(samples(out))
    assert "timeout" not in pq.read_table(out / "failures").column("reason").to_pylist()
    assert download_job.run(cfg, spark).status == "skipped"


# (status, error message) as img2dataset and our guard write them, one per reason at least
CLASSIFY_CASES = [
    ("failed_to_download", "HTTP Error 404: Not Found"),
    ("failed_to_download", "HTTP Error 429: Too Many Requests"),
    ("failed_to_download", "HTTP Error 503: Service Unavailable"),
    ("failed_to_download", "HTTP Error 304: Not Modified"),
    ("failed_to_download", "HTTP Error 302: The HTTP server returned a redirect error that "
     "would lead to an infinite loop.\nThe last 30x error message was:\nFound"),
    ("failed_to_download", "HTTP Error 302: redirection to url 'file:///etc/passwd' is not "
     "allowed"),
    ("failed_to_download", "<urlopen error timed out>"),
    ("failed_to_download", "timed out: the whole-request deadline of 3 s passed"),
    ("failed_to_download", "too_large: the body is over 5 bytes"),
    ("failed_to_download", "<urlopen error [Errno -2] Name or service not known>"),
    ("failed_to_download", "<urlopen error [Errno 111] Connection refused>"),
    ("failed_to_download", "Remote end closed connection without response"),
    ("failed_to_download", "<urlopen error [SSL: CERTIFICATE_VERIFY_FAILED]>"),
    ("failed_to_download", "<urlopen error blocked_address: x is 10.0.0.1>"),
    ("failed_to_download", "<urlopen error blocked_scheme: ftp URLs are not fetched>"),
    ("failed_to_download", "<urlopen error unknown url type: 'None'>"),
    ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive"),
    ("failed_to_download", "something else entirely"), ("failed_to_download", None),
    (None, None),
    *[("failed_to_resize", f"{r}: details") for r in
      ("not_an_image", "decode_error", "too_small", "too_large", "bad_aspect")],
    ("failed_to_resize", "cannot identify image file"),
]


def test_vectorized_classify_equals_classify_on_every_reason():
    import pyarrow as pa

    from wit_builder.images.outcomes import classify, classify_arrays

    status = pa.array([s for s, _ in CLASSIFY_CASES], pa.string())
    error = pa.array([e for _, e in CLASSIFY_CASES], pa.string())
    reason, http_status = classify_arrays(status, error)
    expected = [classify(s, e) for s, e in CLASSIFY_CASES]
    assert list(zip(reason.to_pylist(), http_status.to_pylist(), strict=True)) == expected
    assert {r for r, _ in expected} >= {
        "http_4xx", "http_429", "http_5xx", "bad_redirect", "too_many_redirects",
        "blocked_scheme", "timeout", "too_large", "dns", "connection_refused",
        "connection_reset", "ssl_error", "blocked_address", "opted_out", "download_error",
        "not_an_image", "decode_error", "too_small", "bad_aspect"}


def test_both_engines_keep_the_same_pairs_for_the_same_reasons(spark, tmp_path):
    """The input rules (a uid that may name a file, a URL without credentials, one row
    per uid) are stated once: the local pool's pyarrow and Spark keep the same rows, and
    the same row of a repeated uid, on hostile input."""
    rows = [  # (uid, url, text, page_url)
        ("a" * 8, "http://127.0.0.1/a.jpg", "a", "http://p/2"),
        ("a" * 8, "http://127.0.0.1/b.jpg", "b", "http://p/1"),  # kept: first page_url
        ("a" * 8, "http://127.0.0.1/c.jpg", "c", None),          # ... unless one is null
        ("b" * 8, "http://127.0.0.1/d.jpg", "z", "http://p/3"),
        ("b" * 8, "http://127.0.0.1/d.jpg", "y", "http://p/3"),  # same page and url: text
        ("../etc/passwd", "http://127.0.0.1/e.jpg", "e", None),
        (None, "http://127.0.0.1/f.jpg", "f", None),
        ("c" * 129, "http://127.0.0.1/g.jpg", "g", None),
        ("d" * 8, "http://user:pw@127.0.0.1/h.jpg", "h", None),
        ("e" * 8, "HTTPS://user@127.0.0.1/i.jpg", "i", None),
        ("f" * 8, "", "j", None),
        ("g" * 8, None, "k", None),
        ("h" * 8, "http://127.0.0.1/x.jpg?next=http://u:p@h/", "l", None),  # @ in the query
        ("i" * 8, "http://[::1", "m", None),  # malformed: a fetch failure, not an input drop
        ("j" * 8, "http://127.0.0.1/ü.jpg", "ü", None),
    ]
    table = pa.table({k: [r[i] for r in rows] for i, k in
                      enumerate(("uid", "url", "text", "page_url"))})
    pq.write_table(table, tmp_path / "pairs.parquet")
    local, local_drops = failures.usable_pairs(table)
    kept, spark_drops = plan.usable(spark.read.parquet(str(tmp_path / "pairs.parquet")))
    on_spark = sorted(tuple(r) for r in kept.select("uid", "url", "text").collect())
    assert sorted(zip(*local.select(["uid", "url", "text"]).to_pydict().values(),
                      strict=True)) == on_spark
    assert local_drops == spark_drops == {"bad_uid": 3, "bad_url": 4, "duplicate_uid": 3}
    assert ("a" * 8, "http://127.0.0.1/c.jpg", "c") in on_spark
    assert ("b" * 8, "http://127.0.0.1/d.jpg", "y") in on_spark

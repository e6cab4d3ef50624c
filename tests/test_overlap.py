"""`wit overlap` on a pool of real photos with planted copies of digits test images."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from scipy.stats import beta
from typer.testing import CliRunner

from tests.builders import REPO, png, repo_env, write_shard
from tests.imageserver import PHOTOS, photo
from wit_builder.cli import app
from wit_builder.clip.configs import get_config
from wit_builder.clip.evalsets import load_digits_set
from wit_builder.clip.model import CLIP
from wit_builder.overlap import overlap_job, report
from wit_builder.overlap.configs import OverlapConfig

ARTIFACTS = REPO / "test-artifacts"
# pool sample index → digits test index planted there (upscaled, re-encoded as JPEG)
PLANTED = {1: 7, 4: 120, 9: 333, 13: 449}


def jpeg(image: Image.Image, size: int = 128) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
        out, format="JPEG", quality=85)
    return out.getvalue()


def sample(uid: str, image: bytes) -> list[tuple[str, bytes]]:
    # captions are untrusted web text: one tries to run a script in the report
    caption = f"pool image {uid} <script>document.body.dataset.pwned = 1</script>"
    meta = json.dumps({"uid": uid, "caption": caption, "url": f"http://x/{uid}"}).encode()
    return [(f"{uid}.jpg", image), (f"{uid}.txt", b"a caption"), (f"{uid}.json", meta)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[str, dict[str, int]]:
    """3 shards of 6: real photos, four planted digits, one broken image."""
    root = tmp_path_factory.mktemp("pool")
    test = load_digits_set().test
    planted = {}
    members: list[list[tuple[str, bytes]]] = [[], [], []]
    for i in range(18):
        uid = f"u{i:03d}"
        if i in PLANTED:
            image = jpeg(test.load(PLANTED[i]))
            planted[uid] = PLANTED[i]
        elif i == 17:
            image = b"\xff\xd8\xff broken jpeg"
        else:
            image = jpeg(photo(PHOTOS[i % len(PHOTOS)]), 256)
        members[i // 6] += sample(uid, image)
    for s, shard in enumerate(members):
        write_shard(root / f"{s:05d}.tar", shard)
    return f"{root}/{{00000..00002}}.tar", planted


@pytest.fixture(scope="module")
def phash_run(pool, spark, tmp_path_factory):
    """`wit overlap` with the default method (phash) over the pool."""
    out = tmp_path_factory.mktemp("overlap") / "overlap"
    return overlap_job.run(OverlapConfig(shards=pool[0], out=out), spark)


def test_phash_finds_exactly_the_planted_copies(pool, phash_run):
    _, planted = pool
    result = phash_run
    matches = pq.read_table(result.out_dir / "overlap.parquet").to_pylist()
    first = {(m["uid"], m["eval_index"]) for m in matches if m["rank"] == 1}
    assert first == set(planted.items())
    assert all(m["eval_set"] == "digits" and m["eval_split"] == "test" and m["score"] <= 4
               and m["method"] == "phash" and m["eval_id"] == f"test/{m['eval_index']}"
               for m in matches)
    stats = result.marker["stats"]
    assert stats["rows_in"] == 18 and stats["drops"] == {"eval_overlap": len(planted)}
    assert stats["unreadable_pool_images"] == 1
    assert stats["eval_sets"]["digits"] == {"eval_images": 450, "unreadable": 0,
                                            "matches": len(planted), "pool_scanned": 18}


def test_filtered_shards_hold_the_pool_minus_the_matches(pool, phash_run):
    _, planted = pool
    filtered = phash_run.out_dir / "filtered"
    sizes = json.loads((filtered / "sizes.json").read_text())
    kept = set()
    for name, n in sizes.items():
        with tarfile.open(filtered / name) as tar:
            keys = {m.name.split(".")[0] for m in tar.getmembers()}
        assert len(keys) == n
        kept |= keys
    assert kept == {f"u{i:03d}" for i in range(18)} - set(planted)


def test_clip_method_pairs_exact_copies_with_cosine_near_one(pool, spark, tmp_path):
    """The image tower of a (random) tiny checkpoint: a planted copy's nearest eval image
    is itself (semantic method, strict threshold)."""
    shards, planted = pool
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": CLIP(get_config("tiny")).state_dict(),
                "config": {"model": "tiny"}}, checkpoint)
    cfg = OverlapConfig(shards=shards, out=tmp_path / "o", method=f"clip:{checkpoint}",
                        threshold=0.999, k=1)
    result = overlap_job.run(cfg, spark)
    matches = pq.read_table(result.out_dir / "overlap.parquet").to_pylist()
    found = {m["uid"]: m for m in matches}
    for uid, index in planted.items():
        assert found[uid]["eval_index"] == index and found[uid]["score"] > 0.999
    assert np.all([m["method"] == f"clip:{checkpoint}" for m in matches])


def test_report_numbers_on_a_hand_made_case():
    """10 eval images, 4 in the pool; correct = 1,1,1,0 | 1,0,0,0,1,0 (one unreadable)."""
    correct = np.array([1, 1, 1, 0, 1, 0, 0, 0, 1, -1], dtype=np.int8)
    row = report.set_overlap("toy", "test", 10, {0, 1, 2, 3}, correct)
    assert (row.n_all, row.n_overlap, row.overlap_pct) == (10, 4, 40.0)
    assert row.acc_all == pytest.approx(5 / 9) and row.acc_clean == pytest.approx(2 / 5)
    assert row.acc_overlap == 0.75 and row.all_minus_clean == pytest.approx(5 / 9 - 2 / 5)
    # P(X ≥ 3 | n = 4, p = 0.4) = 4·0.4³·0.6 + 0.4⁴
    assert row.p_value == pytest.approx(4 * 0.4**3 * 0.6 + 0.4**4)
    alpha = 1 - report.CONFIDENCE  # Clopper–Pearson from the beta distribution
    assert row.overlap_ci_low == pytest.approx(beta.ppf(alpha / 2, 3, 2))
    assert row.overlap_ci_high == pytest.approx(beta.ppf(1 - alpha / 2, 4, 1))
    other = report.set_overlap("toy2", "test", 10, {9}, correct)  # only unreadable overlaps
    report.bonferroni([row, other])
    assert row.p_bonferroni == pytest.approx(row.p_value) and other.p_value is None


def test_report_through_the_cli(pool, phash_run, tmp_path):
    _, planted = pool
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": CLIP(get_config("tiny")).state_dict(),
                "config": {"model": "tiny"}}, checkpoint)
    result = CliRunner().invoke(app, ["overlap", "report", "--overlap",
                                      str(phash_run.out_dir), "--checkpoint",
                                      str(checkpoint), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.stderr
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    (digits,) = data["sets"]
    assert (digits["n_all"], digits["n_overlap"]) == (450, len(planted))
    assert 0 <= digits["acc_all"] <= 1 and digits["overlap_ci_low"] is not None
    page = (tmp_path / "report" / "report.html").read_text()
    strongest, borderline = page.split("<h2>Borderline")
    assert strongest.count('<img alt="pool"') == len(planted)
    near = pq.read_table(phash_run.out_dir / "near.parquet").to_pylist()
    assert near and all(4 < m["score"] <= 8 for m in near)  # 4 bits past the 4-bit threshold
    assert borderline.count('class="no match"') == min(len(near), 6)
    assert borderline.count('class="match"') == len(planted)
    assert "&lt;script&gt;" in page and "<script>" not in page  # a hostile caption
    assert "| digits | test | 450 | 4 |" in (tmp_path / "report" / "report.md").read_text()


def test_report_html_in_a_real_headless_browser(pool, phash_run, tmp_path):
    """Debian's chromium renders the page: the tables are there, every thumbnail is a
    decoded image, and the hostile caption's script did not run. The screenshot is kept
    in test-artifacts/."""
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["overlap", "report", "--overlap",
                                      str(phash_run.out_dir), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed (scripts/setup_system.sh installs it)"
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000"]
    url = f"file://{out / 'report.html'}"
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.split("<h2>Borderline")[0].count('<img alt="pool"') == 4
    assert "overlap_pct" in dom
    assert "data-pwned" not in dom and "&lt;script&gt;document.body" in dom
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "overlap_report.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 20  # photos and text, not a blank page


@pytest.fixture(scope="module")
def detector_dir(pool, tmp_path_factory):
    """A copy detector trained for 30 steps on the pool at 64 px (CPU, seconds)."""
    out = tmp_path_factory.mktemp("detector") / "detector"
    result = CliRunner().invoke(app, [
        "overlap", "train-detector", "--shards", pool[0], "--out", str(out), "--image-size",
        "64", "--batch-size", "8", "--steps", "30", "--workers", "0", "--set",
        "checkpoint_every=10"])
    assert result.exit_code == 0, result.stderr
    return out


def test_detector_is_an_exported_program_with_its_description(detector_dir):
    info = json.loads((detector_dir / "detector.json").read_text())
    assert (info["arch"], info["dim"], info["input_size"]) == ("resnet18", 256, 64)
    assert 0 < info["threshold"] < 1 and info["check"]["images"] == 17  # one is broken
    model = torch.export.load(str(detector_dir / "model.pt2")).module()
    vectors = model(torch.randn(3, 3, 64, 64))
    assert vectors.shape == (3, 256)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    stats = json.loads((detector_dir / "stats.json").read_text())
    assert stats["rows_out"] == 30 * 8 and stats["drops"]["unreadable"] >= 1
    assert stats["rows_in"] == stats["rows_out"] + stats["drops"]["unreadable"]
    assert len((detector_dir / "train_log.jsonl").read_text().splitlines()) == 30
    assert not (detector_dir / "state.pt").exists()


def test_detector_and_torchscript_methods_share_one_path(pool, detector_dir, spark, tmp_path):
    """`detector:DIR` matches exactly the planted copies, each with its source among its 3
    nearest (a 30-step detector tells photos from digits, not yet digit from digit); the
    same network as a TorchScript file, given as `torchscript:PATH` with the detector's
    input size, gives the same matches."""
    shards, planted = pool
    program = torch.export.load(str(detector_dir / "model.pt2")).module()
    scripted = tmp_path / "detector.ts"
    torch.jit.trace(program, torch.zeros(2, 3, 64, 64)).save(str(scripted))
    runs = {}
    for spec, extra in ((f"detector:{detector_dir}", {}),
                        (f"torchscript:{scripted}", {"input_size": 64})):
        cfg = OverlapConfig(shards=shards, out=tmp_path / spec.split(":")[0], method=spec,
                            threshold=0.99, k=3, **extra)
        matches = pq.read_table(overlap_job.run(cfg, spark).out_dir / "overlap.parquet")
        runs[spec.split(":")[0]] = [(m["uid"], m["eval_index"], round(m["score"], 5))
                                    for m in matches.to_pylist()]
    assert {uid for uid, _, _ in runs["detector"]} == set(planted)
    assert set(planted.items()) <= {(uid, index) for uid, index, _ in runs["detector"]}
    assert runs["detector"] == runs["torchscript"]


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_approximate_indexes_find_the_same_matches_and_report_recall(pool, phash_run, spark,
                                                                     tmp_path, index):
    result = overlap_job.run(OverlapConfig(shards=pool[0], out=tmp_path / index, index=index),
                             spark)
    read = pq.read_table
    assert read(result.out_dir / "overlap.parquet").equals(
        read(phash_run.out_dir / "overlap.parquet"))
    assert 0.5 <= result.marker["stats"]["index_recall_at_k"] <= 1.0


def test_wds_eval_sets_and_per_set_thresholds(pool, spark, tmp_path):
    """Eval images in webdataset shards are found under their keys; a per-set threshold
    no distance can meet silences one set and leaves the other as it was."""
    shards, planted = pool
    test = load_digits_set().test
    chosen = [7, 120, 5, 6, 8]  # 7 and 120 are planted in the pool
    root = tmp_path / "evalshards"
    root.mkdir()
    write_shard(root / "00000.tar", [(f"eval-{i}.png", png(np.asarray(test.load(i))))
                                     for i in chosen])
    spec = f"wds:{root}/00000.tar"
    cfg = OverlapConfig(shards=shards, out=tmp_path / "o", eval=[spec, "digits"])
    matches = pq.read_table(overlap_job.run(cfg, spark).out_dir / "overlap.parquet")
    found = {(m["uid"], m["eval_id"]) for m in matches.to_pylist()
             if m["eval_set"] == "evalshards"}
    assert found == {("u001", "eval-7"), ("u004", "eval-120")}
    quiet = OverlapConfig(shards=shards, out=tmp_path / "q", eval=[spec, "digits"],
                          thresholds={"evalshards": -1})
    result = overlap_job.run(quiet, spark)
    sets = {m["eval_set"] for m in pq.read_table(result.out_dir / "overlap.parquet")
            .to_pylist()}
    assert sets == {"digits"}
    assert result.marker["stats"]["eval_sets"]["evalshards"]["matches"] == 0
    assert result.marker["stats"]["eval_sets"]["digits"]["matches"] == len(planted)


def test_calibration_of_phash_and_its_plot_in_the_report(pool, phash_run, tmp_path):
    """pHash survives resizing, JPEG and grayscale and not a mirror flip (a known property
    of the DCT hash); the report embeds the PR plot. The pool sample is the filtered pool
    (copies already there would count as false matches)."""
    out = tmp_path / "calibration"
    clean = f"{phash_run.out_dir}/filtered/*.tar"
    result = CliRunner().invoke(app, ["overlap", "calibrate", "--shards", clean, "--out",
                                      str(out), "--eval-sample", "40"])
    assert result.exit_code == 0, result.stderr
    data = json.loads((out / "calibration.json").read_text())
    at = data["at_suggested"]
    assert data["suggested_threshold"] is not None and at["all"]["precision"] >= 0.99
    for name in ("resize_50", "jpeg_30_50", "grayscale"):
        assert at[name]["recall"] >= 0.95, (name, at[name])
    assert at["flip"]["recall"] <= 0.1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["copies"] == 40 * 8 and stats["drops"] == {"unreadable": 1}
    plot = Image.open(out / "pr_curve.png")
    assert plot.size == (700, 500)
    report_dir = tmp_path / "report"
    result = CliRunner().invoke(app, ["overlap", "report", "--overlap",
                                      str(phash_run.out_dir), "--calibration", str(out),
                                      "--out", str(report_dir)])
    assert result.exit_code == 0, result.stderr
    assert '<img class="plot" alt="calibration" src="data:image/png' in (
        report_dir / "report.html").read_text()


def test_a_changed_threshold_decides_again_without_embedding(pool, phash_run, spark,
                                                             tmp_path):
    """Moving the threshold of a finished run (--overwrite) takes its scores over: the
    score files are the same files (hard links), no shard is scored again, and the
    outputs equal those of a fresh run with the new threshold."""
    out = tmp_path / "o"
    shutil.copytree(phash_run.out_dir, out, copy_function=os.link)
    before = {p.name: p.stat().st_ino for p in (out / "neighbours").glob("*")}
    cfg = OverlapConfig(shards=pool[0], out=out, threshold=10, overwrite=True)
    moved = overlap_job.run(cfg, spark)
    after = {p.name: p.stat().st_ino for p in (out / "neighbours").glob("*")}
    assert after == before and len(after) == 3
    assert moved.marker["stats"]["scores_taken_over"] == 3
    fresh = overlap_job.run(cfg.model_copy(update={"out": tmp_path / "fresh"}), spark)
    assert fresh.marker["stats"]["scores_taken_over"] == 0
    for name in ("overlap.parquet", "near.parquet"):
        assert pq.read_table(out / name).equals(pq.read_table(fresh.out_dir / name))
    assert moved.marker["stats"]["drops"] == fresh.marker["stats"]["drops"]
    assert moved.marker["stats"]["drops"]["eval_overlap"] >= 4  # looser: at least as many


def torchless_env(root: Path) -> dict[str, str]:
    """A subprocess environment in which `import torch` (and torchvision) fails, in the
    driver and in Spark's Python workers alike."""
    for name in ("torch", "torchvision"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked')\n")
    env = repo_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env["PYTHONPATH"]])
    return env


def test_a_killed_run_resumes_at_the_unfinished_shards(pool, phash_run, tmp_path):
    """SIGKILL once a shard is scored; the rerun keeps that shard's scores (same file, not
    rewritten) and ends with the same outputs as an uninterrupted run. Both runs are pHash
    runs in processes where torch cannot be imported: pHash needs no torch."""
    out = tmp_path / "o"
    args = [sys.executable, "-m", "wit_builder.cli", "overlap", "--shards", pool[0], "--out",
            str(out), "--master", "local[1]"]
    env = torchless_env(tmp_path / "no-torch")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    finished: list[Path] = []
    while not finished and proc.poll() is None and time.monotonic() < deadline:
        finished = sorted(tmp_path.glob(".o.work-*/neighbours/*.parquet"))
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished, "no shard finished before the deadline"
    stamp = finished[0].stat().st_mtime_ns
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "neighbours" / finished[0].name).stat().st_mtime_ns == stamp
    assert pq.read_table(out / "overlap.parquet").equals(
        pq.read_table(phash_run.out_dir / "overlap.parquet"))
    assert json.loads((out / "stats.json").read_text())["drops"] == {"eval_overlap": 4}
    assert not list(tmp_path.glob(".o.*"))
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env,
                             capture_output=True, text=True)
    assert "torch is blocked" in blocked.stderr


def test_decode_threads_give_the_same_vectors_in_the_same_order():
    """An embedder decoding on 3 threads returns what one thread returns, for pHash and
    for a model method (a TorchScript descriptor), broken images included."""
    import tempfile

    from wit_builder.overlap.methods import Embedder, parse_method

    photos = [jpeg(photo(name), 96) for name in PHOTOS]
    blobs = [*photos[:3], b"\xff\xd8 broken", *photos[3:]]
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    traced = torch.jit.trace(net.eval(), torch.zeros(1, 3, 32, 32))
    with tempfile.TemporaryDirectory() as tmp:
        traced.save(f"{tmp}/net.pt")
        for spec in ("phash", f"torchscript:{tmp}/net.pt"):
            method = parse_method(spec, input_size=32)
            one, ok_one = Embedder(method, "cpu", 1).encoded(blobs)
            many, ok_many = Embedder(method, "cpu", 3).encoded(blobs)
            assert ok_one == ok_many and 3 not in ok_one
            assert np.array_equal(one, many), spec

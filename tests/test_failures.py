"""Every failure path a user can hit, through the real `wit` command.

Each probe feeds bad input to the CLI and checks the exit code, that the error is one
line (no traceback, no Java stack), and that nothing finished is lost. Probes that need
no separate process run in this process through click's runner, sharing the test Spark
session; Ctrl-C and the stderr line count are checked on real subprocesses.
"""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from tests import warcs
from tests.builders import (
    CAPTIONS,
    HAND_PAGES,
    REPO,
    GatedServer,
    LocalServer,
    png,
    repo_env,
    wait_for_event,
    write_dump,
    write_shard,
)
from wit_builder.cli import app
from wit_builder.curate.pairs import PAIR_SCHEMA, PAIRS_FILE
from wit_builder.outputs import read_stats

ENTRIES = REPO / "query_lists" / "enwiki-fixture"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"


def wit(*args: str | Path) -> tuple[int, str, str]:
    """`wit ARGS` in this process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def wit_process(*args: str | Path, **popen) -> subprocess.Popen:
    """`wit ARGS` as its own process (stdout and stderr piped)."""
    return subprocess.Popen([sys.executable, "-m", "wit_builder.cli", *map(str, args)],
                            env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)


def assert_one_line_error(code: int, stderr: str, expected_code: int, text: str) -> None:
    """The command failed with `expected_code` and one `error:` line holding `text`."""
    assert code == expected_code, stderr
    assert "Traceback" not in stderr and "\tat " not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], stderr
    assert stderr.rstrip().splitlines()[-1] == errors[0]


def no_litter(directory: Path) -> None:
    """No temporary sibling of a stage output is left in `directory`."""
    assert not [p.name for p in directory.iterdir() if ".tmp-" in p.name]


@contextmanager
def read_only(directory: Path) -> Iterator[Path]:
    """`directory` made unwritable, for root too (the immutable attribute), then restored."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a directory read-only for root here (chattr)")
    else:
        directory.chmod(0o555)
    try:
        yield directory
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    """A small extract-stage output: real alt-texts as pairs (no `_SUCCESS`)."""
    root = tmp_path_factory.mktemp("pairs") / "extract"
    texts = CAPTIONS[:50]
    rows = {name: [None] * len(texts) for name in PAIR_SCHEMA.names}
    rows.update(uid=[f"{i:024x}" for i in range(len(texts))], text=texts,
                url=[f"http://example.com/{i}.jpg" for i in range(len(texts))])
    (root / PAIRS_FILE).mkdir(parents=True)
    pq.write_table(pa.table(rows, schema=PAIR_SCHEMA), root / PAIRS_FILE / "part-0.parquet")
    return root


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> Path:
    """A `wit train`-style checkpoint of random tiny weights."""
    from wit_builder.clip.configs import get_config
    from wit_builder.clip.model import CLIP

    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"state_dict": CLIP(get_config("tiny")).state_dict(),
                "config": {"model": "tiny"}}, path)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> str:
    """One shard of 16 captioned digit images."""
    root = tmp_path_factory.mktemp("fail_shards")
    digits = (load_digits().images * 255 / 16).astype(np.uint8)
    members = []
    for k in range(16):
        members += [(f"{k:04d}.png", png(digits[k])), (f"{k:04d}.txt", CAPTIONS[k].encode())]
    write_shard(root / "00000.tar", members)
    return str(root / "00000.tar")


def train_args(shards: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--shards", shards, "--out", str(out), "--model", "tiny",
            "--batch-size", "8", "--steps", "4", "--workers", "0", "--precision", "fp32",
            "--save-every", "2", "--warmup-steps", "1", *extra]


# ---- unwritable outputs: refused before any work ------------------------------------------

def test_read_only_outputs_fail_before_work(tmp_path, pairs_dir, checkpoint_file, shards):
    with read_only(tmp_path / "ro") as ro:
        code, _, err = wit("eval", "--checkpoint", checkpoint_file, "--out", ro / "eval")
        assert_one_line_error(code, err, 1, str(ro))
        code, _, err = wit(*train_args(shards, ro / "run"))
        assert_one_line_error(code, err, 1, str(ro))
        code, _, err = wit("match", "--pairs", pairs_dir, "--entries", ENTRIES,
                           "--out", ro / "match")
        assert_one_line_error(code, err, 1, str(ro))
        assert not any(ro.iterdir())


# ---- WARC input that is not WARC -----------------------------------------------------------

def test_files_that_are_not_warc_are_counted_and_shown(tmp_path, spark):
    junk = np.random.default_rng(0).bytes(5000)
    (tmp_path / "random.warc").write_bytes(junk)
    (tmp_path / "random.warc.gz").write_bytes(gzip.compress(junk))
    clipped = warcs.WARC_DIR / "clipped-page.warc.gz"  # real, cut mid-record
    out = tmp_path / "out"
    code, _, err = wit("extract", "--warc", tmp_path / "random.*", "--warc", clipped,
                       "--lang", "none", "--out", out)
    assert code == 0, err
    # all whitespace out: the console folds a long temp path inside a word
    flat = "".join(err.split())
    assert "2inputfile(s)skippedasnot_a_warc" in flat and "random.warc.gz" in flat
    assert "1record(s)truncated" in flat
    counts = pq.read_table(out / "file_counts.parquet").to_pylist()
    assert {(Path(r["source_file"]).name, r["n"]) for r in counts
            if r["counter"] == "not_a_warc"} == {("random.warc", 1), ("random.warc.gz", 1)}
    code, shown, _ = wit("show", out)
    assert code == 0 and "not_a_warc" in shown and "truncated" in shown


def test_no_warc_at_all_is_an_error_naming_the_files(tmp_path, spark):
    (tmp_path / "a.warc.gz").write_bytes(gzip.compress(b"hello world\n" * 100))
    (tmp_path / "b.warc").write_text("not a warc either\n")
    code, _, err = wit("extract", "--warc", tmp_path / "*.warc*", "--out", tmp_path / "out")
    assert_one_line_error(code, err, 2, "no WARC/WAT record in any of the 2 input file(s)")
    assert "a.warc.gz" in err and "b.warc" in err
    assert not (tmp_path / "out").exists()
    no_litter(tmp_path)


# ---- wrong inputs and configs ------------------------------------------------------------

def test_wrong_stage_input_is_named(tmp_path, pairs_dir):
    code, _, err = wit("balance", "--pairs", pairs_dir, "--entries", ENTRIES,
                       "--out", tmp_path / "b")
    assert_one_line_error(code, err, 2, "has no entry_ids column: expected the output of "
                          "wit match")
    code, _, err = wit("match", "--pairs", pairs_dir, "--entries", pairs_dir,
                       "--out", tmp_path / "m")
    assert_one_line_error(code, err, 2, "holds no entries.parquet")


def test_a_pipeline_yaml_configures_each_stage_from_its_own_section(tmp_path):
    """configs/demo.yaml has querylist and curate sections: match reads neither."""
    code, _, err = wit("match", "--config", DEMO_CONFIG, "--pairs", tmp_path / "none",
                       "--entries", ENTRIES, "--out", tmp_path / "m")
    assert_one_line_error(code, err, 2, "pairs not found")  # got past the config
    code, _, err = wit("querylist", "--config", DEMO_CONFIG, "--wiki-dump", tmp_path / "x",
                       "--set", "min_count=0", "--out", tmp_path / "q")
    assert_one_line_error(code, err, 2, "min_count: Input should be greater than or equal")


def test_bad_dumps_are_one_line_errors(tmp_path):
    dump = write_dump(tmp_path / "good.xml.bz2", HAND_PAGES)
    (tmp_path / "cut.xml.bz2").write_bytes(dump.read_bytes()[:-20])
    (tmp_path / "text.xml.bz2").write_text("<mediawiki>not compressed</mediawiki>\n")
    for name, text in (("cut", "is truncated"), ("text", "is not a bz2 file")):
        code, _, err = wit("querylist", "--wiki-dump", tmp_path / f"{name}.xml.bz2",
                           "--wordnet", "none", "--out", tmp_path / name)
        assert_one_line_error(code, err, 2, text)
    no_litter(tmp_path)


# ---- training and evaluation ---------------------------------------------------------------

def test_train_refuses_another_config_unless_told(tmp_path, shards, caplog):
    out = tmp_path / "run"
    assert wit(*train_args(shards, out))[0] == 0
    code, _, err = wit(*train_args(shards, out, "--lr", "0.01"))
    assert_one_line_error(code, err, 2, "holds a run with another config (lr 0.0005 → 0.01)")
    code, _, err = wit(*train_args(shards, out, "--lr", "0.01", "--steps", "6",
                                   "--set", "resume=latest"))
    assert code == 0, err
    assert "with a changed config: lr 0.0005 → 0.01, steps 4 → 6" in caplog.text
    assert (out / "checkpoints" / "step_00000006.pt").is_file()
    code, _, err = wit(*train_args(shards, out, "--lr", "0.02", "--overwrite"))
    assert code == 0, err
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == [
        "step_00000002.pt", "step_00000004.pt"]  # started afresh


def test_train_and_eval_never_write_into_another_stages_output(tmp_path, shards,
                                                               checkpoint_file):
    dump = write_dump(tmp_path / "d.xml.bz2", HAND_PAGES)
    other = tmp_path / "querylist"
    assert wit("querylist", "--wiki-dump", dump, "--wordnet", "none", "--out", other)[0] == 0
    code, _, err = wit(*train_args(shards, other))
    assert_one_line_error(code, err, 2, "holds a finished `wit querylist` output")
    code, _, err = wit("eval", "--checkpoint", checkpoint_file, "--out", other)
    assert_one_line_error(code, err, 2, "holds a finished `wit querylist` output")
    assert (other / "entries.parquet").is_file()


def test_unreadable_latest_checkpoint_falls_back_to_an_older_one(tmp_path, shards, caplog):
    out = tmp_path / "run"
    assert wit(*train_args(shards, out))[0] == 0
    latest = out / "checkpoints" / "step_00000004.pt"
    latest.write_bytes(latest.read_bytes()[:1000])  # a copy cut short
    (out / "_SUCCESS").unlink()  # as if the run had been killed while saving
    code, _, err = wit(*train_args(shards, out))
    assert code == 0, err
    assert f"skipping unreadable checkpoint: {latest} is not a readable" in caplog.text
    state = torch.load(latest, weights_only=True)
    assert state["step"] == 4


@pytest.mark.parametrize("content", ["random", "text", "tensor"])
def test_a_file_that_is_not_a_checkpoint_is_a_one_line_error(tmp_path, shards, content):
    path = tmp_path / "bad.pt"
    if content == "random":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif content == "text":
        path.write_text("this is not a checkpoint\n")
    else:
        torch.save(torch.zeros(3), path)
    code, _, err = wit("eval", "--checkpoint", path, "--out", tmp_path / "eval")
    assert_one_line_error(code, err, 2, str(path))
    code, _, err = wit(*train_args(shards, tmp_path / "run", "--set", f"resume={path}"))
    assert_one_line_error(code, err, 2, str(path))


# ---- real processes: Ctrl-C and stderr -----------------------------------------------------

def test_ctrl_c_is_one_line_leaves_no_temp_and_a_rerun_finishes(tmp_path):
    """Ctrl-C while extraction runs (held at its request for one WARC file): one line,
    exit 130, no temporary directory; the same command then finishes."""
    server = GatedServer(warcs.WARC_DIR, gated=warcs.CLIPPED.name)
    manifest = tmp_path / "warcs.txt"
    manifest.write_text(f"{server.url}/{warcs.CLIPPED.name}\n{warcs.WARCIO}\n")
    out = tmp_path / "curate"
    args = ("curate", "--manifest", manifest, "--entries", ENTRIES, "--out", out,
            "--master", "local[1]")
    proc = wit_process(*args, start_new_session=True)
    wait_for_event(server.arrived, proc)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=120)
    assert_one_line_error(proc.returncode, err, 130, "interrupted")
    assert not out.exists()
    no_litter(tmp_path)
    server.release()
    proc = wit_process(*args)
    _, err = proc.communicate(timeout=300)
    server.close()
    assert proc.returncode == 0, err
    assert (out / "_SUCCESS").is_file()


# ---- stage 4 --------------------------------------------------------------------------------

def test_download_and_shards_bad_inputs_are_one_line_errors(tmp_path, pairs_dir):
    code, _, err = wit("download", "--pairs", pairs_dir, "--allow-network", "127.0.0.300/32",
                       "--out", tmp_path / "d")
    assert_one_line_error(code, err, 2, "allow_network: Value error, '127.0.0.300/32' is not "
                          "an address range")
    code, _, err = wit("download", "--pairs", ENTRIES, "--out", tmp_path / "d")
    assert_one_line_error(code, err, 2, "has no uid, url, text column: expected the output "
                          "of wit balance or wit curate")
    code, _, err = wit("shards", "--images", pairs_dir, "--out", tmp_path / "s")
    assert_one_line_error(code, err, 2, "holds no .tar shard: expected a `wit download` output")
    no_litter(tmp_path)


def test_overlap_bad_inputs_are_one_line_errors(tmp_path, shards):
    """A missing eval dir, an empty pool, models that are not models or do not fit, and
    thresholds for a set that is not checked: one line each, exit 2, nothing left."""
    empty = tmp_path / "empty.tar"
    write_shard(empty, [])
    misfit = tmp_path / "misfit.pt"
    torch.save({"state_dict": {"visual.proj": torch.zeros(3)}, "config": {"model": "tiny"}},
               misfit)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model at all")
    out = tmp_path / "o"
    probes = [
        (["--shards", shards, "--eval", f"imagefolder:{tmp_path / 'nope'}"], "not a directory"),
        (["--shards", str(empty)], "the pool shards hold no samples"),
        (["--shards", shards, "--method", f"clip:{misfit}"], "does not fit model tiny"),
        (["--shards", shards, "--method", f"torchscript:{junk}"], "is not a TorchScript model"),
        (["--shards", shards, "--method", f"detector:{tmp_path}"], "is not a `wit overlap "
         "train-detector` output"),
        (["--shards", shards, "--set", "thresholds.cifar10=3"], "thresholds given for unknown"),
        (["--shards", shards, "--method", "sscd"], "unknown method 'sscd'"),
    ]
    for args, text in probes:
        code, _, err = wit("overlap", *args, "--out", out, "--master", "local[1]")
        assert_one_line_error(code, err, 2, text)
        assert not out.exists()
    code, _, err = wit("overlap", "train-detector", "--shards", str(empty), "--out", out,
                       "--steps", "1", "--batch-size", "2", "--workers", "0")
    assert_one_line_error(code, err, 2, "the pool shards hold no samples")
    code, _, err = wit("overlap", "calibrate", "--shards", str(empty), "--out", out)
    assert_one_line_error(code, err, 2, "the pool shards hold no readable image")
    no_litter(tmp_path)


class FlakyServer(LocalServer):
    """A real HTTP server on 127.0.0.1 serving one WARC file under paths that fail first:
    ``/retry-after/N/…`` answers 503 with ``Retry-After: 1`` to its first N requests,
    ``/busy/N/…`` 503 without it, ``/reset/N/…`` resets the connection, ``/down/…``
    answers 503 for ever. `times` records when each path was asked for."""

    def __init__(self, warc: Path) -> None:
        import http.server
        import socket
        import struct
        import time

        self.times: dict[str, list[float]] = {}
        body, server = warc.read_bytes(), self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self, head_only: bool) -> None:
                asked = server.times.setdefault(self.path, [])
                asked.append(time.monotonic())
                kind, _, rest = self.path.strip("/").partition("/")
                failing = kind == "down" or len(asked) <= int(rest.split("/")[0] or 0)
                if failing and kind == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if failing:
                    self.send_response(503)
                    if kind == "retry-after":
                        self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self.answer(head_only=False)

            def do_HEAD(self) -> None:
                self.answer(head_only=True)

            def log_message(self, *args) -> None:
                pass

        super().__init__(Handler)


def test_flaky_servers_are_retried_and_a_dead_one_is_a_counted_drop(tmp_path, spark):
    """Files behind 503 (with and without Retry-After) and connection resets are read
    after retries, each exactly once in the output; a file whose server never recovers
    is a ``file_unreadable`` drop with its error, a notice, and the job succeeds."""
    name = warcs.CC_EXCERPT.name
    server = FlakyServer(warcs.CC_EXCERPT)
    flaky = [f"/retry-after/2/{name}", f"/busy/2/{name}", f"/reset/2/{name}"]
    manifest = tmp_path / "warcs.txt"
    manifest.write_text("".join(f"{server.url}{p}\n" for p in [*flaky, f"/down/{name}"]))
    try:
        code, _, err = wit("extract", "--manifest", manifest, "--lang", "none",
                           "--out", tmp_path / "out", "--retry-backoff", 0.05,
                           "--file-attempts", 4, "--master", "local[2]")
    finally:
        server.close()
    assert code == 0, err
    assert "1inputfile(s)skippedasfile_unreadable" in "".join(err.split())
    rows = pq.read_table(tmp_path / "out" / "file_counts.parquet").to_pylist()
    dead = [r for r in rows if r["counter"] == "file_unreadable"]
    assert [r["source_file"] for r in dead] == [f"{server.url}/down/{name}"]
    assert dead[0]["detail"]
    assert len(server.times[f"/down/{name}"]) >= 4  # every attempt was made
    code, _, err = wit("extract", "--warc", warcs.CC_EXCERPT, "--lang", "none",
                       "--out", tmp_path / "alone", "--master", "local[2]")
    assert code == 0, err
    expected = {r["counter"]: r["n"] for r in
                pq.read_table(tmp_path / "alone" / "file_counts.parquet").to_pylist()}
    for path in flaky:
        got = {r["counter"]: r["n"] for r in rows if r["source_file"] == server.url + path}
        assert got == expected, path  # read once, completely: nothing doubled or lost
    def waits(path: str) -> list[float]:
        return [b - a for a, b in itertools.pairwise(server.times[path])]

    # Retry-After: 1 is honoured over the 0.05 s backoff (an attempt may ask twice)
    assert max(waits(flaky[0])) >= 0.9 and max(waits(flaky[1])) < 0.9
    stats = read_stats(tmp_path / "out")
    assert stats["bad_files"] == {"file_unreadable": 1}
    assert stats["rows_in"] == 3 * read_stats(tmp_path / "alone")["rows_in"]

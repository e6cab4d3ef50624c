"""Downloading pairs' images into webdataset shards with img2dataset's `Downloader`.

The pairs are split into input shards of `samples_per_shard` rows in uid order
(`plan_shards`), so shard contents do not depend on how Spark laid out its files. Each
input shard is one task: the task installs the network guard (`netguard`) in its process
and hands the shard to img2dataset's `Downloader`, which fetches with a thread pool, runs
our `decode.Resizer`, and writes ``NNNNN.tar`` (successes), ``NNNNN.parquet`` (every row
with its status and error) and, last, ``NNNNN_stats.json``. That file is the shard's
completion mark: on a rerun shards that have it are kept, the others are redone from
scratch (their partial files removed first), so no truncated tar and no sample twice.

The shard task is shared: `plan` runs it in Spark tasks, the shards planned there;
`download_missing` runs it on a local process pool (the `multiprocessing` distributor),
the shards planned on the driver (`plan_shards`, `write_inputs`).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.errors import Incomplete
from wit_builder.images import netguard
from wit_builder.images.decode import Resizer
from wit_builder.outputs import piece_done
from wit_builder.spark import SHOW_LOGS_ENV, send_output_to, spark_log_file

if TYPE_CHECKING:
    from wit_builder.images.configs import DownloadConfig

# albumentations (imported by img2dataset) checks online for updates unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
INPUTS_DIR = "_inputs"
POLL_SECONDS = 2.0  # progress refresh: one directory listing each
SHARD_GRACE = 60.0  # seconds a shard gets to write its files once its requests are cut
LOW_SPACE = 16 * 2**20  # free bytes under which a failed shard is taken for a full disk
# Pair columns copied into each sample's .json (those the input has).
CARRIED = ("uid", "entry_ids", "keep_prob", "page_url")
OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
USER_AGENT_TOKEN = "wit-builder"


@dataclass(frozen=True)
class FetchSettings:
    """Everything a download task needs (picklable: it travels to Spark workers)."""

    output_folder: str
    resizer: Resizer
    columns: tuple[str, ...]
    samples_per_shard: int
    threads: int = 16
    timeout: float = 10.0
    retries: int = 1
    respect_opt_out: bool = True
    allow_network: tuple[str, ...] = ()
    limits: netguard.Limits = field(default_factory=netguard.Limits)
    shard_deadline: float | None = None  # seconds a shard may take (`fetch_within`)
    env: dict[str, str] = field(default_factory=dict)


def settings_for(cfg: DownloadConfig, work: Path) -> FetchSettings:
    """The task settings of a download run writing into `work` (``columns`` are set
    when its shards are planned)."""
    resizer = Resizer(cfg.image_size, cfg.resize_mode, cfg.min_image_size,
                      cfg.max_aspect_ratio, cfg.max_pixels)
    return FetchSettings(
        output_folder=str(work), resizer=resizer, columns=(),
        samples_per_shard=cfg.samples_per_shard, threads=cfg.threads, timeout=cfg.timeout,
        retries=cfg.retries, respect_opt_out=cfg.respect_opt_out,
        allow_network=tuple(cfg.allow_network), env={"NO_ALBUMENTATIONS_UPDATE": "1"},
        limits=netguard.Limits(cfg.deadline, cfg.max_bytes),
        shard_deadline=cfg.shard_deadline or auto_shard_deadline(cfg))


def auto_shard_deadline(cfg: DownloadConfig) -> float:
    """The longest a shard can take if every request runs to its deadline, every retry
    too, plus a minute for decoding and writing: past it something is stuck."""
    rounds = -(-cfg.samples_per_shard // cfg.threads) * (cfg.retries + 1)
    return rounds * cfg.deadline + 60.0


def shard_name(shard_id: int) -> str:
    """The shard's file stem (img2dataset names ``STEM.tar``, ``STEM.parquet``...)."""
    return Path(tarshards.shard_name(shard_id)).stem


def plan_shards(pairs: pa.Table, samples_per_shard: int, first_id: int = 0
                ) -> dict[int, pa.Table]:
    """{shard id: rows}: the input rows in uid order, cut into shards numbered from
    `first_id`: url, caption and the carried columns."""
    carried = [c for c in CARRIED if c in pairs.column_names]
    table = pairs.select(["url", "text", *carried]).rename_columns(
        ["url", "caption", *carried]).sort_by("uid")
    return {first_id + n: table.slice(start, samples_per_shard)
            for n, start in enumerate(range(0, table.num_rows, samples_per_shard))}


def done_shards(work: Path) -> set[int]:
    """Shards whose completion mark (img2dataset's ``NNNNN_stats.json``) exists."""
    return {int(p.name.split("_")[0]) for p in work.glob("*_stats.json") if piece_done(p)}


def clear_partial(work: Path, shard_id: int) -> None:
    """Remove what a killed task left of a shard."""
    for suffix in (".tar", ".parquet"):
        (work / f"{shard_name(shard_id)}{suffix}").unlink(missing_ok=True)


def write_inputs(work: Path, shards: dict[int, pa.Table], todo: Iterable[int]
                 ) -> list[tuple[int, str]]:
    """Write the input shards still to do as Arrow IPC files (what `Downloader` reads)."""
    folder = work / INPUTS_DIR
    folder.mkdir(exist_ok=True)
    out = []
    for shard_id in todo:
        path = folder / f"{shard_name(shard_id)}.feather"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, shards[shard_id].schema) \
                as writer:
            writer.write_table(shards[shard_id])
        out.append((shard_id, str(path)))
    return out


def make_downloader(settings: FetchSettings) -> Any:
    """img2dataset's `Downloader`, configured from `settings`."""
    from img2dataset.downloader import Downloader
    from img2dataset.writer import WebDatasetSampleWriter

    return Downloader(
        sample_writer_class=WebDatasetSampleWriter, resizer=settings.resizer,
        thread_count=settings.threads, save_caption=True, extract_exif=False,
        output_folder=settings.output_folder, column_list=list(settings.columns),
        timeout=settings.timeout, number_sample_per_shard=settings.samples_per_shard,
        oom_shard_count=tarshards.SHARD_DIGITS, compute_hash="sha256", verify_hash_type=None,
        encode_format="jpg", retries=settings.retries, user_agent_token=USER_AGENT_TOKEN,
        disallowed_header_directives=list(OPT_OUT_DIRECTIVES)
        if settings.respect_opt_out else None)


def downloader_in_task(settings: FetchSettings) -> Any:
    """img2dataset's `Downloader` for this worker process, with the network guard and
    its limits installed first."""
    os.environ.update(settings.env)
    netguard.install(settings.allow_network, settings.limits)
    return make_downloader(settings)


def fetch_shards(shards: Iterable[tuple[int, str]], settings: FetchSettings
                 ) -> Iterator[tuple[int, bool]]:
    """Download each (shard id, input file) in this process: (shard id, finished)."""
    downloader = downloader_in_task(settings)
    for shard_id, path in shards:
        yield shard_id, fetch_shard(downloader, shard_id, path, settings)


def fetch_shard(downloader: Any, shard_id: int, path: str, settings: FetchSettings) -> bool:
    """Download one shard from its input file `path`, what a killed task left of it
    removed first, under the shard watchdog; whether it finished."""
    clear_partial(Path(settings.output_folder), shard_id)
    return fetch_within(downloader, (shard_id, path), settings.shard_deadline)


def fetch_within(downloader: Any, shard: tuple[int, str], seconds: float | None) -> bool:
    """Run `downloader` on `shard` under the shard watchdog: past `seconds` every request
    still open is cut off (its row a ``timeout``) so the shard can finish; if it is still
    stuck a while later (e.g. in a DNS lookup), it counts as a failed shard (the run ends
    incomplete and a rerun redoes it). Whether the shard finished."""
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(downloader(shard)[0]), daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        netguard.expire_all(f"timed out: the shard's deadline of {seconds:g} s passed")
        worker.join(SHARD_GRACE)
    return bool(result and result[0])


def quiet_worker(log: str | None) -> None:
    """Pool initializer: the worker's own output (img2dataset's tracebacks) goes to the
    log file, not around the CLI's lines (None: left on the terminal)."""
    if log is not None:
        send_output_to(log)


def _fetch_one(args: tuple[tuple[int, str], FetchSettings]) -> tuple[int, bool]:
    shard, settings = args
    return next(fetch_shards([shard], settings))


def run_on_processes(shards: list[tuple[int, str]], settings: FetchSettings,
                     processes: int) -> list[tuple[int, bool]]:
    """One shard at a time per process of a local pool (spawned: no forked threads)."""
    import multiprocessing

    log = str(spark_log_file()) if not os.environ.get(SHOW_LOGS_ENV) else None
    with multiprocessing.get_context("spawn").Pool(max(1, processes), initializer=quiet_worker,
                                                   initargs=(log,)) as pool:
        return list(pool.imap_unordered(_fetch_one, [(s, settings) for s in shards]))


class ProgressWatch:
    """Follows the shards' stats files while tasks run: images done, success rate,
    images per second, shown with rich."""

    def __init__(self, work: Path, total: int, already: int | None) -> None:
        self.work, self.total = work, total
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.seen: dict[str, tuple[int, int]] = {}  # finished shard → (rows, successes)
        self.already = self.counts()[0] if already is None else already

    def counts(self) -> tuple[int, int]:
        """(rows done, successes) over the finished shards; a stats file is read once,
        when its shard finishes (on shared storage a listing is cheap, 65k reads are not)."""
        for path in self.work.glob("*_stats.json"):
            if path.name in self.seen:
                continue
            try:
                stats = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            self.seen[path.name] = (stats.get("count", 0), stats.get("successes", 0))
        return (sum(n for n, _ in self.seen.values()), sum(k for _, k in self.seen.values()))

    def _run(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("download"), BarColumn(), TextColumn("{task.completed:,}/"
                   "{task.total:,} images"), TextColumn("{task.fields[rate]}"),
                   TimeRemainingColumn())
        started = time.monotonic()
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            task = progress.add_task("download", total=self.total, rate="")
            while not self.stop.wait(POLL_SECONDS):
                done, ok = self.counts()
                speed = (done - self.already) / max(1e-9, time.monotonic() - started)
                rate = f"{ok / done:.0%} ok, {speed:.0f} img/s" if done else ""
                progress.update(task, completed=done, rate=rate)

    def __enter__(self) -> ProgressWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def read_outcomes(work: Path, shard_ids: Iterable[int]) -> pa.Table | None:
    """Every input row's outcome: img2dataset's per-shard Parquet files concatenated
    (None for no shard)."""
    tables = [pq.read_table(work / f"{shard_name(s)}.parquet") for s in sorted(shard_ids)]
    return pa.concat_tables(tables, promote_options="default") if tables else None


def shard_files(work: Path, shard_id: int) -> list[Path]:
    """The files a finished shard consists of."""
    name = shard_name(shard_id)
    return [work / f"{name}.tar", work / f"{name}.parquet", work / f"{name}_stats.json"]


def check_results(results: list[tuple[int, bool]], settings: FetchSettings) -> None:
    """`OSError` (no space) or `Incomplete` if a shard task failed as a whole."""
    failed = sorted(shard for shard, ok in results if not ok)
    if failed and shutil.disk_usage(settings.output_folder).free < LOW_SPACE:
        # img2dataset reports a full disk as a failed shard (its traceback is in the
        # log): say what happened; the finished shards are kept for the rerun
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), settings.output_folder)
    if failed:
        raise Incomplete(f"{len(failed)} shard task(s) failed (e.g. {failed[0]}); rerun to "
                         "retry them: finished shards are kept")


def download_missing(work: Path, shards: dict[int, pa.Table], settings: FetchSettings,
                     processes: int) -> None:
    """Download on a local pool of `processes` the `shards` that `work` does not hold
    finished yet (`settings` with ``columns`` still empty: they come from the planned
    shards); `Incomplete` if a shard task failed as a whole (the rest is kept)."""
    from dataclasses import replace

    done = done_shards(work)
    todo = write_inputs(work, shards, [i for i in shards if i not in done])
    first = next(iter(shards.values()), None)
    columns = first.column_names if first is not None else ["url", "caption"]
    settings = replace(settings, columns=tuple(columns))
    total = sum(t.num_rows for t in shards.values())
    already = sum(shards[i].num_rows for i in done if i in shards)
    with ProgressWatch(work, total, already):
        if todo:
            check_results(run_on_processes(todo, settings, processes), settings)
    shutil.rmtree(work / INPUTS_DIR, ignore_errors=True)  # tasks delete their own


def move_shards(src: Path, dst: Path, shard_ids: Iterable[int]) -> None:
    """Move finished shards' files from `src` into `dst`."""
    for shard_id in shard_ids:
        for path in shard_files(src, shard_id):
            os.replace(path, dst / path.name)

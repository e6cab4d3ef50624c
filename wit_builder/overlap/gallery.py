"""Pairs of images for people to judge: the strongest matches of an overlap run, the
borderline ones around its threshold, each with the eval image, the pool image and the
pool sample's caption and URL (`wit overlap report`'s galleries, `explore.plot_gallery`).
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from wit_builder import tarshards
from wit_builder.overlap import report_page
from wit_builder.overlap.evalimages import set_name, splits_of
from wit_builder.overlap.matches import NEAR_FILE, iter_rows
from wit_builder.overlap.methods import Method

Pair = tuple[dict, Image.Image | None, Image.Image | None, dict]


def pool_sample(shards: dict[str, str], shard: str, key: str) -> tuple[Image.Image | None, dict]:
    """The pool image and its JSON (caption, url) from the pool shard named `shard`."""
    blob, meta = tarshards.read_sample(shards[shard], key)
    try:
        image = Image.open(io.BytesIO(blob)) if blob is not None else None
    except OSError:
        image = None
    return image, meta


def pair_images(run: dict[str, Any], pairs: list[dict]) -> list[Pair]:
    """(row, eval image, pool image, pool JSON) for overlap rows `pairs` of `run`."""
    paths = tarshards.expand(run["shards"])
    shards = dict(zip(tarshards.shard_ids(paths), paths, strict=True))
    specs = {set_name(s): s for s in run["eval"]}
    splits: dict[tuple[str, str], Any] = {}  # each eval split loaded once
    out = []
    for m in pairs:
        where = (m["eval_set"], m["eval_split"])
        if where not in splits:
            splits[where] = dict(splits_of(specs[where[0]], where[1]))[where[1]]
        pool_image, meta = pool_sample(shards, m["shard"], m["key"])
        out.append((m, splits[where].load(m["eval_index"]), pool_image, meta))
    return out


def with_images(run: dict[str, Any], pairs: list[dict]) -> list[dict]:
    """`pairs` (overlap rows) with both thumbnails, the pool caption and URL."""
    return [{**m, "eval_img": report_page.data_uri(eval_image),
             "pool_img": report_page.data_uri(pool),
             "caption": meta.get("caption", ""), "url": meta.get("url", "")}
            for m, eval_image, pool, meta in pair_images(run, pairs)]


def strongest(method: Method, matches: Iterable[dict], count: int) -> list[dict]:
    """The `count` best-scoring matches (best first), holding `count` rows at a time."""
    if method.binary:  # Hamming bits: fewer is stronger
        return heapq.nsmallest(count, matches, key=lambda m: m["score"])
    return heapq.nlargest(count, matches, key=lambda m: m["score"])


def borderline(method: Method, matches: Iterable[dict], near: Iterable[dict], count: int
               ) -> list[dict]:
    """The `count` weakest matches and the `count` strongest non-matches, ordered from
    best to worst score so the threshold falls between the two halves."""
    def margin(m: dict) -> float:
        return abs(m["score"] - method.threshold_for(m["eval_set"]))

    above = [{**m, "side": "match"} for m in heapq.nsmallest(count, matches, key=margin)]
    below = [{**m, "side": "no match"} for m in heapq.nsmallest(count, near, key=margin)]
    return strongest(method, above + below, 2 * count)


def galleries(run: dict[str, Any], method: Method, overlap: Path, count: int
              ) -> list[dict]:
    """The report's two galleries of the overlap output `overlap` (none for `count` 0);
    its matches and near neighbours are streamed (read twice at most, never held
    whole)."""
    if not count:
        return []
    half = max(1, count // 2)
    best = strongest(method, iter_rows(overlap), count)
    edge = borderline(method, iter_rows(overlap), iter_rows(overlap, NEAR_FILE), half)
    return [{"title": "Strongest matches", "matches": with_images(run, best)},
            {"title": "Borderline: the weakest matches and the closest non-matches",
             "matches": with_images(run, edge)}]

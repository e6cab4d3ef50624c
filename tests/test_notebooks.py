"""The notebooks in `notebooks/` run top to bottom (nbclient, a real kernel) on a small run
made here with the real stages, and are committed without outputs."""

from __future__ import annotations

import io
import json

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from tests import warcs
from tests.builders import FIXTURES, HAND_PAGES, REPO, write_dump, write_shard
from wit_builder.clip.evalsets import load_digits_set
from wit_builder.curate import curate_job
from wit_builder.curate.configs import CurateConfig
from wit_builder.overlap import overlap_job, report_job
from wit_builder.overlap.configs import OverlapConfig, ReportConfig
from wit_builder.querylist import querylist_job
from wit_builder.querylist.configs import QueryListConfig

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").resize((96, 96)).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def run_dir(spark, tmp_path_factory):
    """querylist, curate, overlap and report outputs under one root, as a pipeline run."""
    root = tmp_path_factory.mktemp("run")
    dump = write_dump(root / "hand.xml.bz2", HAND_PAGES)
    querylist_job.run(QueryListConfig(wiki_dump=[str(dump)], wordnet=None, min_count=1,
                                      min_bigram_count=2, min_pmi=2,
                                      out=root / "querylist"), spark)
    curate_job.run(CurateConfig(warc=[str(warcs.WARC_DIR / "*")], t=2, out=root / "curate",
                                entries=REPO / "query_lists" / "enwiki-fixture"), spark)
    test = load_digits_set().test
    members = []
    for i in range(6):
        meta = json.dumps({"uid": f"u{i}", "caption": "a digit", "url": f"http://x/{i}"})
        members += [(f"u{i}.jpg", jpeg(test.load(i * 7))), (f"u{i}.json", meta.encode())]
    (root / "pool").mkdir()
    write_shard(root / "pool" / "00000.tar", members)
    overlap = overlap_job.run(OverlapConfig(shards=str(root / "pool" / "00000.tar"),
                                            out=root / "overlap"), spark)
    report_job.run(ReportConfig(overlap=overlap.out_dir, out=root / "report"))
    return root


def test_notebooks_are_committed_without_outputs():
    assert len(NOTEBOOKS) == 3
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, run_dir, monkeypatch):
    monkeypatch.setenv("WIT_RUN", str(run_dir))
    monkeypatch.setenv("WIT_FIXTURES", str(FIXTURES))
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("execute_result", "display_data") for o in outputs)

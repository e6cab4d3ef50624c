"""Shared test fixtures: real fixture files, one local Spark session, dump writers."""

from __future__ import annotations

import bz2
import os
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("WIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
WIKI_DUMP = (FIXTURES / "wikipedia"
             / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
WORDNET = Path("/usr/share/wordnet")

HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">
  <siteinfo><sitename>Wikipedia</sitename><dbname>enwiki</dbname></siteinfo>
"""
FOOTER = "</mediawiki>\n"


def page_xml(title: str, text: str, ns: int = 0, redirect: str | None = None) -> str:
    """One <page> element in the export-0.10 layout."""
    red = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>1</id>\n"
            f"{red}    <revision>\n      <id>2</id>\n      <model>wikitext</model>\n"
            f'      <text xml:space="preserve">{escape(text)}</text>\n    </revision>\n'
            "  </page>\n")


def write_dump(path: Path, pages: list[str], compress: bool = True) -> Path:
    """Write a dump holding `pages` (from `page_xml`), bz2-compressed or plain."""
    data = (HEADER + "".join(pages) + FOOTER).encode()
    path.write_bytes(bz2.compress(data) if compress else data)
    return path


def read_bz2_text(path: Path) -> str:
    """Whole decompressed text of a bz2 file (multistream included)."""
    with bz2.open(path, "rt", encoding="utf-8") as f:
        return f.read()


@pytest.fixture(scope="session")
def wiki_dump() -> Path:
    if not WIKI_DUMP.is_file():
        pytest.fail(f"fixture missing: {WIKI_DUMP} (set WIT_FIXTURES)")
    return WIKI_DUMP


@pytest.fixture(scope="session")
def spark():
    from wit_builder.spark import get_spark

    session = get_spark("local[2]", "wit-tests", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()


def repo_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that imports this checkout (kept PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}

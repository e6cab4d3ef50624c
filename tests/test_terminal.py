"""Web text on the user's terminal: shown as the characters it holds, through the CLI.

Captions, URLs and file names can hold terminal escapes (ESC [2J clears the screen, OSC 8
plants a hyperlink) and Rich markup (a `[link=...]` that shows one URL and links another,
a leftover `[/url]` that is an error to Rich). Every place that prints them must show
them as text, escapes visible.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from tests import warcs
from wit_builder.cli import app
from wit_builder.config import StageConfig
from wit_builder.curate.pairs import PAIR_SCHEMA, PAIRS_FILE
from wit_builder.outputs import MARKER, run_stage
from wit_builder.stats import StageStats

HOSTILE = ["\x1b[2J\x1b[Hscreen cleared",
           "\x1b]8;;http://evil.example\x1b\\innocent\x1b]8;;\x1b\\",
           "[link=http://evil.example]click[/link]",
           "a leftover [/url] from bbcode",
           "bidi \u202etxt.exe",
           "c1 \x9b31m csi"]


def cli(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def flat(text: str) -> str:
    """The text without whitespace (the console folds long cells)."""
    return "".join(text.split())


def hostile_pairs(out):
    """A finished output whose pairs hold hostile captions and URLs (the stage contract
    of `outputs.run_stage`)."""
    def body(tmp):
        rows = [{"uid": f"{i:024x}", "url": f"http://example.com/{i}[/b].jpg", "text": t,
                 "attr": "alt", "page_url": "http://example.com/", "lang": "en",
                 "lang_score": 0.9, "source_file": f"x[/b]{i}.warc.gz"}
                for i, t in enumerate(HOSTILE)]
        (tmp / PAIRS_FILE).mkdir()
        pq.write_table(pa.Table.from_pylist(rows, schema=PAIR_SCHEMA),
                       tmp / PAIRS_FILE / "part-0.parquet")
        stats = StageStats("extract", rows_in=len(rows), rows_out=len(rows))
        stats.notice("skipped \x1b[2J x[/b]y.warc [link=http://evil.example]here[/link]")
        return stats
    return run_stage("extract", 1, StageConfig(out=out), [], body)


def test_wit_show_prints_hostile_captions_as_text(tmp_path):
    hostile_pairs(tmp_path / "pairs")
    code, out, err = cli("show", tmp_path / "pairs", "--rows", len(HOSTILE))
    assert code == 0, err
    for control in ("\x1b", "\x9b", "\u202e"):
        assert control not in out
    shown = flat(out)
    assert "[link=http://evil.example]click[/link]" in shown
    assert "aleftover[/url]frombbcode" in shown
    assert "\\x1b[2J\\x1b[Hscreencleared" in shown
    assert "\\u202e" in shown and "\\x9b31mcsi" in shown
    assert "http://example.com/0[/b].jpg" in shown
    assert "skipped\\x1b[2Jx[/b]y.warc[link=http://evil.example]here[/link]" in shown


def test_an_input_path_with_markup_is_shown_and_the_stage_succeeds(tmp_path, spark):
    """A skipped input file named like markup: the notice names it literally and the
    command exits 0 (it used to fail after writing its output, on every rerun)."""
    folder = tmp_path / "x["
    folder.mkdir()
    (folder / "b]junk.warc").write_text("not a warc\n")
    clipped = warcs.WARC_DIR / "clipped-page.warc.gz"
    code, _, err = cli("extract", "--warc", folder / "b]junk.warc", "--warc", clipped,
                       "--lang", "none", "--out", tmp_path / "out")
    assert code == 0, err
    assert "x[/b]junk.warc" in flat(err)


def test_error_lines_show_paths_literally(tmp_path):
    missing = tmp_path / "a[/b]\x1b[2J"
    code, _, err = cli("show", missing)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a[/b]\\x1b[2J" in flat(err) and "\x1b" not in err


def test_a_torn_marker_is_one_line(tmp_path):
    hostile_pairs(tmp_path / "pairs")
    (tmp_path / "pairs" / MARKER).write_text('{"stage": "extr')
    code, _, err = cli("show", tmp_path / "pairs")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "not a finished wit output" in err
    (tmp_path / "pairs" / MARKER).write_text("[1, 2]")
    code, _, err = cli("show", tmp_path / "pairs")
    assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_a_garbage_table_in_an_output_is_one_line(tmp_path):
    hostile_pairs(tmp_path / "pairs")
    (tmp_path / "pairs" / PAIRS_FILE / "part-0.parquet").write_bytes(b"PAR1 not parquet")
    code, _, err = cli("show", tmp_path / "pairs")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "is not a readable table of this output" in err

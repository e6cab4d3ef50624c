import json
from pathlib import Path

import pytest

from wit_builder.config import StageConfig
from wit_builder.errors import OutputExistsError
from wit_builder.outputs import MARKER, run_stage
from wit_builder.stats import StageStats


class ToyConfig(StageConfig):
    value: int = 1


def writer(content: str):
    def body(tmp: Path) -> StageStats:
        (tmp / "data.txt").write_text(content)
        stats = StageStats("toy", rows_in=3, rows_out=2)
        stats.drop("too_short")
        return stats
    return body


def test_run_writes_marker_stats_and_skips_rerun(tmp_path):
    cfg = ToyConfig(out=tmp_path / "out")
    first = run_stage("toy", 1, cfg, [], writer("a"))
    assert first.status == "ran"
    marker = json.loads((tmp_path / "out" / MARKER).read_text())
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert marker["config_hash"] == first.marker["config_hash"]
    assert stats["drops"] == {"too_short": 1} and stats["rows_out"] == 2
    again = run_stage("toy", 1, cfg, [], writer("b"))
    assert again.status == "skipped"
    assert (tmp_path / "out" / "data.txt").read_text() == "a"


def test_different_config_refuses_then_overwrites(tmp_path):
    run_stage("toy", 1, ToyConfig(out=tmp_path / "out"), [], writer("a"))
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        run_stage("toy", 1, ToyConfig(out=tmp_path / "out", value=2), [], writer("b"))
    result = run_stage("toy", 1, ToyConfig(out=tmp_path / "out", value=2, overwrite=True),
                       [], writer("b"))
    assert result.status == "ran"
    assert (tmp_path / "out" / "data.txt").read_text() == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failure_leaves_previous_output_untouched(tmp_path):
    cfg = ToyConfig(out=tmp_path / "out")
    run_stage("toy", 1, cfg, [], writer("a"))

    def crash(tmp: Path) -> StageStats:
        (tmp / "data.txt").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage("toy", 1, ToyConfig(out=tmp_path / "out", value=3, overwrite=True), [], crash)
    assert (tmp_path / "out" / "data.txt").read_text() == "a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_foreign_directory_and_stale_temp(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "someone_elses.txt").write_text("x")
    with pytest.raises(OutputExistsError, match="no _SUCCESS marker"):
        run_stage("toy", 1, ToyConfig(out=tmp_path / "out"), [], writer("a"))
    stale = tmp_path / ".fresh.tmp-deadbeef"
    stale.mkdir()
    run_stage("toy", 1, ToyConfig(out=tmp_path / "fresh"), [], writer("a"))
    assert not stale.exists()

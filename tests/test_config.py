from pathlib import Path

import pytest

from wit_builder.config import config_hash, load_config
from wit_builder.errors import ConfigError
from wit_builder.querylist.configs import QueryListConfig


def test_layers_precedence(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("querylist:\n  min_count: 7\n  min_pmi: 3\n  out: a\nother:\n  x: 1\n")
    cfg = load_config(QueryListConfig, "querylist", cfg_file,
                      flags={"wiki_dump": "d.xml", "min_pmi": 4.5, "min_views": None},
                      sets=["min_pmi=5", "max-entries=1000"])
    assert cfg.min_count == 7          # from YAML
    assert cfg.min_pmi == 5            # --set beats flag beats YAML
    assert cfg.max_entries == 1000     # dashes accepted in --set keys
    assert cfg.min_views == 70         # default (None flags are ignored)
    assert cfg.wiki_dump == ["d.xml"] and cfg.out == Path("a")


def test_file_without_stage_section_is_the_section(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("wiki_dump: [x.bz2, y.bz2]\nout: o\nwordnet: none\n")
    cfg = load_config(QueryListConfig, "querylist", cfg_file)
    assert cfg.wiki_dump == ["x.bz2", "y.bz2"] and cfg.wordnet is None


@pytest.mark.parametrize(("sets", "message"), [
    (["min_count=-3"], "min_count: Input should be greater than or equal to 1"),
    (["min_count=lots"], "min_count: Input should be a valid integer"),
    (["no_such_key=1"], "no_such_key: Extra inputs are not permitted"),
    (["min_count"], "--set expects key=value"),
])
def test_bad_values_name_the_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(QueryListConfig, "querylist", None,
                    flags={"wiki_dump": "d", "out": "o"}, sets=sets)


def test_missing_required_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="wiki_dump: Field required"):
        load_config(QueryListConfig, "querylist", None, flags={"out": "o"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(QueryListConfig, "querylist", bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(QueryListConfig, "querylist", tmp_path / "missing.yaml")


def test_hash_ignores_runtime_fields_only():
    base = QueryListConfig(wiki_dump=["d"], out=Path("a"))
    moved = QueryListConfig(wiki_dump=["d"], out=Path("b"), master="spark://h:7077",
                            overwrite=True, split_mb=1)
    changed = QueryListConfig(wiki_dump=["d"], out=Path("a"), min_count=5)
    h = config_hash("querylist", 1, base, [])
    assert h == config_hash("querylist", 1, moved, [])
    assert h != config_hash("querylist", 1, changed, [])
    assert h != config_hash("querylist", 2, base, [])
    assert h != config_hash("querylist", 1, base, [("d", 1, 2)])

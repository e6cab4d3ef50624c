"""The configuration of `wit querylist`; defaults are the MetaCLIP/CLIP paper's.

Each field's description is also its command-line help (`cli.stage_command`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from wit_builder.config import SparkStageConfig
from wit_builder.querylist.wordnet import NameStyle


class QueryListConfig(SparkStageConfig):
    """Parameters of `wit querylist`; defaults are the MetaCLIP/CLIP paper's."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = SparkStageConfig.RUNTIME_FIELDS | {
        "split_mb", "flush_keys"}

    wiki_dump: list[str] = Field(description="pages-articles XML dump(s): paths or globs")
    pageviews: list[str] | None = Field(None, description="hourly pageview files (globs)")
    wordnet: Path | None = Field(Path("/usr/share/wordnet"), description="WordNet dict dir")
    wordnet_names: NameStyle = Field(
        "case", description="synset names: case = first lemma as written; metaclip = "
        "lower-cased and cut at the first '.', as MetaCLIP's list")
    min_count: int = Field(100, ge=1, description="unigram minimum count")
    min_pmi: float = Field(30.0, description="bigram minimum PMI (log2)")
    min_bigram_count: int = Field(3, ge=1, description="bigram minimum count")
    min_views: int = Field(70, ge=1, description="title minimum summed views")
    min_hourly_views: int = Field(50, ge=1, description="hourly row floor for views")
    require_title_in_dump: bool = Field(True, description="titles must be ns-0 dump pages")
    max_entries: int = Field(500_000, ge=100, description="cap on the list size")
    split_mb: int = Field(64, ge=1, description="Spark input split size (MiB)")
    flush_keys: int = Field(500_000, ge=1000, description="keys per worker before a flush")

    @field_validator("wiki_dump", "pageviews", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("wordnet", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        return None if value is None or str(value).lower() in ("", "none") else value

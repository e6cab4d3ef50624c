"""The configurations of the curation stages (`wit extract`, `match`, `balance`, `curate`).

They live together because `wit curate` is the other three in one job: its config is
extract's plus balance's, and no job module imports another job module. Each field's
description is also its command-line help (`cli.stage_command`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from wit_builder.config import SparkStageConfig
from wit_builder.curate.extract import ExtractParams
from wit_builder.curate.staging import Retries


class ExtractConfig(SparkStageConfig):
    """Parameters of `wit extract`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = SparkStageConfig.RUNTIME_FIELDS | {
        "files_per_task", "file_attempts", "retry_backoff"}

    warc: list[str] | None = Field(None, description="WARC/WAT files: paths, globs or URIs")
    manifest: str | None = Field(None, description="file listing one WARC/WAT path a line "
                                 "(local or URI, .gz ok)")
    manifest_prefix: str = Field("", description="prepended to each manifest line")
    lid_model: str | None = Field(None, description="fastText LID model (default: the "
                                  "bundled lid.176.ftz)")
    lang: str | None = Field("en", description="language to keep; none keeps all")
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0, description="min LID probability")
    lid: bool = Field(True, description="run language ID; false (only with lang none and "
                      "min_lang_score 0, where it filters nothing) leaves lang and "
                      "lang_score null and saves its cost")
    attrs: list[Literal["alt", "title"]] = Field(["alt", "title"], min_length=1,
                                                 description="img attributes used as text")
    min_text_chars: int = Field(3, ge=1, description="shortest text kept")
    max_text_chars: int = Field(1000, ge=1, description="longest text kept")
    max_url_chars: int = Field(2048, ge=16, description="longest URL kept")
    files_per_task: int = Field(1, ge=1, description="input files per Spark task")
    file_attempts: int = Field(6, ge=1, description="tries to read an input file (503, "
                               "429, resets, timeouts) before it counts as file_unreadable")
    retry_backoff: float = Field(2.0, ge=0.0, description="seconds before the first retry "
                                 "of a file, doubling each time (with jitter; a longer "
                                 "Retry-After is honoured)")

    @field_validator("warc", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lang", "lid_model", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        return None if value is None or str(value).lower() in ("", "none") else value

    @model_validator(mode="after")
    def _one_input(self) -> ExtractConfig:
        if (self.warc is None) == (self.manifest is None):
            raise ValueError("give exactly one of warc (paths/globs) or manifest")
        if not self.lid and (self.lang is not None or self.min_lang_score > 0):
            raise ValueError("lid=false needs lang none and min_lang_score 0 (without "
                             "language ID nothing can be filtered by language)")
        return self

    def retries(self) -> Retries:
        """How patiently each input file is read (`staging.Retries`)."""
        return Retries(self.file_attempts, self.retry_backoff)

    def params(self, lid_model: str | None) -> ExtractParams:
        """The per-file parameters, with the model as the workers will find it."""
        return ExtractParams(
            lid_model=lid_model, lang=self.lang, min_lang_score=self.min_lang_score,
            lid=self.lid,
            attrs=tuple(self.attrs), min_text_chars=self.min_text_chars,
            max_text_chars=self.max_text_chars, max_url_chars=self.max_url_chars)


class MatchConfig(SparkStageConfig):
    """Parameters of `wit match`."""

    pairs: Path = Field(description="extract output dir (or a pairs Parquet dataset)")
    entries: Path = Field(description="querylist output dir, entries.parquet or .txt")


class BalanceParams(BaseModel):
    """How to balance (shared by `wit balance` and `wit curate`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: int = Field(20_000, ge=1, description="max pairs per entry (MetaCLIP t)")
    tail_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="choose t so entries with ≤ t matches hold this "
        "share of all matches")
    seed: int = Field(0, description="seed of the hash-based uniform draw")


class BalanceConfig(SparkStageConfig, BalanceParams):
    """Parameters of `wit balance`."""

    pairs: Path = Field(description="match output dir (or a matched pairs dataset)")
    entries: Path = Field(description="the query list the pairs were matched against")


class CurateConfig(ExtractConfig, BalanceParams):
    """Parameters of `wit curate`: those of extract and balance, plus the entry list."""

    entries: Path = Field(description="querylist output dir, entries.parquet or .txt")

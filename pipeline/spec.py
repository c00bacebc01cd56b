"""The job spec: one YAML or JSON file, validated before any work starts.

Every field has a default and a description; `thresher spec-reference` prints
them as the README's reference table. Unknown fields are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from thresher.operators import schema as S
from thresher.operators.quadmix import QuaDMixParams
from thresher.operators.quadmix_search import ParamRanges

from .errors import SpecError
from .scorers import ScorersSpec
from .spec_base import CorpusRef, Strict, params_model


class InputSpec(Strict):
    paths: list[str] = Field(description="Files, directories or globs of Parquet or JSONL; local paths or pyarrow filesystem URIs (s3://, gs://, hdfs://, file://).")
    format: Literal["auto", "parquet", "jsonl"] = Field("auto", description="Input format; auto picks by file extension (.parquet/.pq or .jsonl/.json/.ndjson).")
    text_column: str = Field("text", description="Column (or JSON key) holding the document text.")
    id_column: str | None = Field(None, description="Column holding a document id; none = doc_id is the BLAKE2b-128 hash of the text.")
    token_column: str | None = Field(None, description="Column holding a token count; none = estimated as UTF-8 bytes / bytes_per_token.")
    bytes_per_token: float = Field(4.0, gt=0, description="Bytes per token for the estimate when token_column is none.")
    max_bytes: int = Field(1_000_000, gt=0, description="Texts larger than this (UTF-8 bytes) are quarantined as oversized.")

    @field_validator("paths")
    @classmethod
    def _nonempty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one input path is required")
        return v


class EmbedderSpec(Strict):
    model: str = Field("static", description="'static' (model2vec distillation of MiniLM, fast on CPU), 'minilm' (all-MiniLM-L6-v2, fp16 on GPU) or a local sentence-transformers / model2vec "
        "directory.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = CUDA when available (one GPU per actor), else CPU.")
    batch_size: int = Field(256, gt=0, description="Documents per batch handed to an embedding actor.")
    model_batch_size: int = Field(64, gt=0, description="Documents per forward pass inside the model.")
    actors: int = Field(1, gt=0, description="Embedding actors in the pool (each loads the model once).")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs reserved per CPU embedding actor.")
    gpus_per_actor: float = Field(1.0, gt=0, le=1, description="Share of a GPU per CUDA embedding actor: 0.5 runs two actors on each GPU.")
    precision: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="Weights and activations of a sentence-transformers model on CUDA (CPU runs fp32). Like "
        "the device, not part of the embed phase's key.")

    def local_model(self) -> str | None:
        """The model directory the spec names, or None for a bundled model (`minilm`, `static`)."""
        return None if self.model in ("minilm", "static") else self.model


class ClusteringSpec(Strict):
    n_clusters: int = Field(16, gt=0, description="k in k-means (clamped to the sample size).")
    n_iter: int = Field(25, gt=0, description="Lloyd iterations of refinement.")
    n_redo: int = Field(1, gt=0, description="Restarts; the best objective wins.")
    sample_size: int = Field(100_000, gt=0, description="At most this many embedded documents are used to fit the centroids.")


QuaDMixParamsSpec = params_model(QuaDMixParams, "QuaDMixParamsSpec")


class FilterSpec(Strict):
    column: str = Field(description="Column to test: a sig_* or q_* column, lang, or a passthrough column.")
    min: float | None = Field(None, description="Documents below this are not eligible.")
    max: float | None = Field(None, description="Documents above this are not eligible.")
    values: list[str] | None = Field(None, description="Documents whose (string) value is not one of these are not eligible, e.g. lang in [en].")

    @model_validator(mode="after")
    def _one_bound(self) -> "FilterSpec":
        if self.values is not None and (self.min is not None or self.max is not None):
            raise ValueError("a filter tests values or bounds (min, max), not both")
        if self.min is None and self.max is None and self.values is None:
            raise ValueError("a filter needs min, max or values")
        return self

    def build(self):
        from thresher.operators.selection import ThresholdFilter, ValueFilter

        return ValueFilter(self.column, tuple(self.values)) if self.values is not None else ThresholdFilter(self.column, self.min, self.max)


class BudgetSpec(Strict):
    unit: Literal["docs", "tokens"] = Field("docs", description="What the budget counts (copies included).")
    amount: float = Field(gt=0, description="Target size of the selection, met in expectation.")


class SelectionBase(Strict):
    """What every strategy shares: the eligible pool, the budget and what happens when the pool is too small."""

    budget: BudgetSpec | None = Field(None, description="Selection size; none = the strategy's own expected size (only quadmix has one).")
    domain: str = Field("cluster", description="'cluster' = the k-means cluster id, or the name of an input column (or JSONL key).")
    filters: list[FilterSpec] = Field(default_factory=list, description="Eligibility thresholds applied before sampling; failures are recorded with a reason.")
    exclude: list[str] = Field(default_factory=list, description="Decision columns that make a document ineligible when set: q_rule_* (a rule's reason), d_exact_dup, d_near_dup, d_semdup.")
    percentile_bins: int = Field(4096, ge=16, description="Histogram bins per domain for quality percentiles and budget thresholds.")
    max_copies: int = Field(4, ge=1, description="No document gets more copies than this (strategies that sample without replacement give at most one).")
    on_shortfall: Literal["warn", "error"] = Field("warn", description="When the eligible pool cannot fill the budget: warn (select what it can, report the shortfall in the manifest) or error "
        "(stop).")

    def columns(self) -> set[str]:
        """Columns the strategy reads, besides domain and n_tokens."""
        return set()

    def build_filters(self) -> list:
        """Exclusions, then filters: what makes a valid document ineligible, each with its reason."""
        from thresher.operators.selection import FlagFilter

        return [*(FlagFilter(c) for c in self.exclude), *(f.build() for f in self.filters)]

    def build(self, dirs: dict[str, Path | None], seed: int):
        raise NotImplementedError


SearchRangesSpec = params_model(ParamRanges, "SearchRangesSpec")


class SearchSpec(Strict):
    """QuaDMix's parameter search (RegMix procedure): proxy runs, a LightGBM regressor, the average of the predicted best."""

    validation: CorpusRef = Field(description="Text the proxy is scored on: what the selection should serve (for example the target set).")
    proxy: str = Field(
        "ngram",
        pattern=r"^(ngram|transformer|command:[A-Za-z0-9_.-]+)$",
        description="Proxy evaluator: ngram (an interpolated trigram LM, seconds per run on CPU), transformer (a ~1M-parameter causal LM trained a fixed number of steps, GPU when present) or "
            "command:NAME (a command the operator configured under proxy_commands; a spec can name one, never give one).",
    )
    runs: int = Field(64, ge=10, description="Parameter sets drawn and run through the proxy.")
    rounds: int = Field(1, ge=1, description="Rounds the runs are split over: the first draws at random, each later one runs the draws a regressor fitted on the runs so far predicts best (1 = "
        "RegMix's single round).")
    sample_size: int = Field(20_000, gt=0, description="Proxy runs select from this many eligible documents (hash-uniform sample), at the job's budget share.")
    columns: list[str] = Field(default_factory=list, description="Quality columns α is searched over; empty = the keys of selection.quadmix.alpha.")
    candidates: int = Field(100_000, gt=0, description="Fresh draws the regressor predicts on.")
    top_k: int = Field(128, gt=0, description="The regressor's choice is the average of this many best-predicted draws.")
    holdout: float = Field(0.3, ge=0, lt=1, description="Share of the validation texts (by a hash of each) the runs never see: the finalists are judged on it (0 = on the same texts).")
    finalists: int = Field(4, ge=0, description="Best measured runs that join the regressor's choice as finalists.")
    remeasure: int = Field(3, ge=1, description="Fresh selection seeds each finalist is run with on the held-out texts; the lowest mean loss wins (see diverse).")
    fallback: bool = Field(True, description="Top-k by each searched column alone is a finalist too, and DSIR resampling with scorers.dsir; when one wins, the job selects it "
        "instead of QuaDMix and says so.")
    anchored: float = Field(0.5, ge=0, le=1, description="Share of the draws on lines from each column's top-k (as QuaDMix parameters) toward every domain's top share in "
        "proportion, parameters tied across domains; the anchors themselves are runs of the first round (0 = every draw independent per domain, as QuaDMix draws).")
    diverse: bool = Field(True, description="Of the finalists within one standard error of the lowest mean held-out loss (the error of the difference, text by text, with "
        "a built-in proxy), the one spreading widest over the domains wins (cluster entropy); false = the lowest mean wins.")
    ranges: SearchRangesSpec = Field(default_factory=SearchRangesSpec, description="Ranges the parameters are drawn from.")


def check_quality_columns(field: str, columns) -> None:
    """Weights merge quality columns into one score in [0, 1] (its histogram's range): only q_* columns, each in [0, 1],
    may be weighed; a u_* utility has its own scale (its percentile is its q_* column, as q_dsir is u_dsir's)."""
    wrong = sorted(c for c in columns if not c.startswith("q_") or c.startswith("q_rule_"))
    if wrong:
        raise ValueError(f"{field}{': ' if field else ''}{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not a quality column (q_*, in [0, 1]); "
                         "weigh q_* columns (a u_* score's percentile is its q_* column: q_dsir, q_uds)")


class WeighedSelection(SelectionBase):
    """A strategy ranking by `by`, quality columns and their weights (each subclass sets its default): q_* columns only."""

    @field_validator("by", check_fields=False)
    @classmethod
    def _quality_by(cls, v: dict[str, float]) -> dict[str, float]:
        check_quality_columns("", v)
        return v

    def columns(self) -> set[str]:
        return set(self.by)


class QuaDMixSelection(SelectionBase):
    """QuaDMix quality-diversity sampling (operators/quadmix.py), with its parameter search when `search` is set."""

    strategy: Literal["quadmix"] = Field("quadmix", description="quadmix (quality-diversity sampling), topk (best by merged quality), kmq (per-cluster budgets, quality sampling inside), uniform "
        "(random baseline), dsir (Gumbel top-k on DSIR weights; needs scorers.dsir), facility_location (per-domain budgets, the documents that best represent each domain), max_min (per-domain "
            "budgets, the most spread-out documents of each domain), odis (the top documents along decorrelated quality axes), uds (utility-diversity sampling over a seeded stream) or skillit "
            "(per-domain shares from a skills graph and rounds toward a target).")
    quadmix: QuaDMixParamsSpec = Field(default_factory=QuaDMixParamsSpec, description="QuaDMix parameters for every domain.")
    domains: dict[str, QuaDMixParamsSpec] = Field(default_factory=dict, description="Per-domain QuaDMix overrides, keyed by domain value.")
    search: SearchSpec | None = Field(None, description="Search the parameters per domain with proxy runs (the search phase); the result replaces quadmix and domains.")
    from_search: str | None = Field(None, description="Use the parameters of an earlier search: its search.json (WORK/search-KEY/search.json).")

    @model_validator(mode="after")
    def _search_needs_budget(self) -> "QuaDMixSelection":
        if self.search is not None and self.budget is None:
            raise ValueError("selection.search needs selection.budget: proxy runs compare selections of one size")
        if self.search is not None and self.search.runs // self.search.rounds < 10:
            raise ValueError("selection.search.runs / rounds must be at least 10: every round fits a regressor on the runs before it")
        if self.search is not None and self.from_search is not None:
            raise ValueError("give selection.search or selection.from_search, not both")
        check_quality_columns("selection.quadmix.alpha / domains / search.columns", self.columns())
        return self

    def columns(self) -> set[str]:
        return {c for p in [self.quadmix, *self.domains.values()] for c in p.alpha} | set(self.search.columns if self.search else ())

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.quadmix import QuaDMix
        from thresher.operators.quadmix_search import SearchResult

        found = dirs.get("search") and dirs["search"] / "search.json" or self.from_search
        if found:
            result = SearchResult.load(Path(found))
            if result.fallback and result.fallback.get("strategy") == "dsir":  # DSIR resampling beat every QuaDMix finalist on held-out text
                from thresher.operators.dsir import DSIR, DSIRResample

                if not (dirs.get("fit") and (dirs["fit"] / "dsir").is_dir()):
                    raise SpecError(f"selection: the search in {found} chose DSIR resampling, which needs scorers.dsir in this job")
                return DSIRResample.from_dsir(DSIR.load(dirs["fit"] / "dsir"), seed=seed)
            if result.fallback:  # top-k by one column did (a search of an earlier version says only "by")
                from thresher.operators.selection import TopK

                return TopK(result.fallback["by"])
            return QuaDMix(self.quadmix.build(), result.params(), max_copies=self.max_copies)
        return QuaDMix(self.quadmix.build(), {k: v.build() for k, v in self.domains.items()}, max_copies=self.max_copies)


class TopKSelection(WeighedSelection):
    """The best documents by a weighted mean of quality columns, one copy each."""

    strategy: Literal["topk"]
    budget: BudgetSpec = Field(description="Selection size.")
    by: dict[str, float] = Field(default_factory=lambda: {S.Q_HEURISTIC: 1.0}, description="Quality columns and their weights, merged into the ranking score.")


    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.selection import TopK

        return TopK(dict(self.by))


class RefineSpec(Strict):
    """Iterative kMQ (the paper's §3.2): rounds of budget / rounds, cluster weights from a proxy between rounds."""

    validation: CorpusRef = Field(description="Text a proxy is trained on to judge closeness to the target (with target_weight > 0).")
    rounds: int = Field(3, ge=2, description="Rounds R; each takes budget / R.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature over the cluster scores (z-scored): small = the budget follows the scores closely.")
    target_weight: float = Field(0.0, ge=0, le=1, description="Cluster score = (1 - w) z(loss of the selection's proxy on the cluster's unselected members) + w z(closeness to validation: minus the "
        "loss of a proxy trained on it).")
    probe: int = Field(32, gt=0, description="Unselected members of each cluster the proxies are scored on, per round.")
    proxy: Literal["ngram", "transformer"] = Field("ngram", description="Proxy evaluator for the rounds: ngram or transformer (see selection.search.proxy); it scores documents one by one, which a "
        "command proxy cannot.")
    sample_size: int = Field(20_000, gt=0, description="The rounds run on this many eligible documents (hash-uniform sample), at the job's budget share.")


class KMQSelection(WeighedSelection):
    """kMQ (arXiv 2409.11378): a budget per domain (cluster), Gumbel top-k on quality / T inside it (operators/kmq.py)."""

    strategy: Literal["kmq"]
    budget: BudgetSpec = Field(description="Selection size.")
    by: dict[str, float] = Field(default_factory=lambda: {S.Q_HEURISTIC: 1.0}, description="Quality columns and their weights, merged into q.")
    temperature: float = Field(0.1, gt=0, description="T in p ∝ exp(q / T) inside a domain: small = that domain's top-k, large = uniform.")
    split: Literal["equal", "proportional"] = Field("equal", description="Budget per domain: equal (the paper; a small domain's unused share goes to the rest) or proportional to its size.")
    refine: RefineSpec | None = Field(None, description="Iterative kMQ: cluster shares refined over rounds with a proxy (the search phase); none = static kMQ.")


    def build(self, dirs: dict[str, Path | None], seed: int):
        import json

        from thresher.operators.kmq import KMQ

        weights = json.loads((dirs["search"] / "kmq_shares.json").read_text())["shares"] if dirs.get("search") else None
        return KMQ(dict(self.by), self.temperature, self.split, seed, weights=weights)


class SkillsSpec(Strict):
    """Skill-It's search (operators/skillit.py): the skills graph from short proxy runs, then online rounds of multiplicative weights."""

    validation: CorpusRef = Field(description="The target: text the selection should serve; split into target skills by the skill whose proxy explains each text best.")
    rounds: int = Field(4, ge=2, description="Rounds T; each takes budget / T by the mixture of the moment.")
    eta: float = Field(0.5, gt=0, description="Learning rate of the multiplicative weights: p ∝ exp(eta · A · summed normalised losses).")
    window: int = Field(3, ge=1, description="Evaluations summed in the update (the reference's mw_window).")
    graph_docs: int = Field(64, gt=0, description="Documents per skill in the graph's proxies: the base trains on this many of every skill, each skill's proxy on the base plus this "
        "many more of it.")
    proxy: Literal["ngram", "transformer"] = Field("ngram", description="Proxy evaluator (see selection.search.proxy); it scores target texts one by one, which a command proxy cannot.")
    sample_size: int = Field(20_000, gt=0, description="The graph and the rounds run on this many eligible documents (hash-uniform sample), at the job's budget share.")


class SkillItSelection(SelectionBase):
    """Skill-It (arXiv 2307.14430): budget shares per domain (skill) from the skills graph and online rounds toward a target, uniform inside a skill."""

    strategy: Literal["skillit"]
    budget: BudgetSpec = Field(description="Selection size.")
    refine: SkillsSpec = Field(description="The skills graph and the rounds (the search phase).")

    def build(self, dirs: dict[str, Path | None], seed: int):
        import json

        from thresher.operators.skillit import SkillIt

        found = json.loads((dirs["search"] / "skills.json").read_text())
        return SkillIt(found["shares"], seed, rounds={k: v for k, v in found.items() if k != "shares"})


class UniformSelection(SelectionBase):
    """Every eligible document with the same probability: the random baseline."""

    strategy: Literal["uniform"]
    budget: BudgetSpec = Field(description="Selection size.")

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.selection import Uniform

        return Uniform()


class DSIRSelection(SelectionBase):
    """DSIR resampling toward a target corpus: Gumbel top-k on the importance weights (needs scorers.dsir)."""

    strategy: Literal["dsir"]
    budget: BudgetSpec = Field(description="Selection size.")

    def columns(self) -> set[str]:
        return {S.U_DSIR}

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.dsir import DSIR, DSIRResample

        return DSIRResample.from_dsir(DSIR.load(dirs["fit"] / "dsir"), seed=seed)


_SPLIT = "Budget per domain (kMQ style): equal (a small domain's unused share goes to the rest) or proportional to its size, in the budget's unit."


class FacilityLocationSelection(SelectionBase):
    """Facility location per domain (INGENIOUS): the documents that best represent their domain on a kNN graph of the embeddings (operators/subset_select.py)."""

    strategy: Literal["facility_location"]
    budget: BudgetSpec = Field(description="Selection size, split over the domains; a tokens budget takes each domain's greedy picks until they reach its share.")
    split: Literal["equal", "proportional"] = Field("equal", description=_SPLIT)
    neighbors: int = Field(32, gt=0, description="Neighbours per document in the cosine kNN graph: a pick covers the documents that have it among their nearest; more = smoother coverage, memory n x "
        "neighbors per domain.")

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.subset_select import FacilityLocation

        return FacilityLocation(self.neighbors, self.split)


class MaxMinSelection(SelectionBase):
    """Max-min diversity per domain (DivPrune's rule): each pick the farthest in cosine distance from those before it (operators/subset_select.py)."""

    strategy: Literal["max_min"]
    budget: BudgetSpec = Field(description="Selection size, split over the domains; a tokens budget takes each domain's greedy picks until they reach its share.")
    split: Literal["equal", "proportional"] = Field("equal", description=_SPLIT)

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.subset_select import MaxMin

        return MaxMin(self.split)


class ODiSSelection(SelectionBase):
    """ODiS (arXiv 2510.18909): the top documents along decorrelated (PCA) axes of several quality scores (operators/subset_select.py)."""

    strategy: Literal["odis"]
    budget: BudgetSpec = Field(description="Selection size, split equally over the axes; the documents the axes share are back-filled round-robin.")
    scores: list[str] = Field(default_factory=list, description="Numeric score-file columns the axes are fitted on (q_*, sig_*, d_*, a numeric Parquet input column); empty = every numeric q_* "
        "column but q_lang_score.")
    components: int = Field(4, ge=1, description="PCA axes kept (fewer when the columns span fewer).")
    per_domain: bool = Field(False, description="false (the paper) = one ODiS over the whole eligible pool; true = the budget split over selection.domain (see split) and axes fitted per domain. "
        "selection.domain names the output's domain either way.")
    split: Literal["equal", "proportional"] = Field("equal", description="With per_domain: " + _SPLIT)

    def columns(self) -> set[str]:
        return set(self.scores)

    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.subset_select import ODiS

        return ODiS(odis_columns(list(self.scores), dirs.get("score")), self.components, self.split, self.per_domain)


class UDSSelection(WeighedSelection):
    """UDS (utility-diversity sampling, gfyddha/UDS): the pool streamed in a seeded order, each batch's documents of highest utility
    + alpha x mean embedding distance to the last documents taken (operators/subset_select.py)."""

    strategy: Literal["uds"]
    budget: BudgetSpec = Field(description="Selection size, spread evenly over the stream's batches; a tokens budget keeps the stream's first picks reaching it.")
    by: dict[str, float] = Field(default_factory=lambda: {S.Q_UDS: 1.0}, description="Utility: quality columns and their weights (default q_uds, which needs scorers.uds).")
    alpha: float = Field(5.0, ge=0, description="Weight of diversity (mean L2 distance of the document's embedding to the memory) against the utility in [0, 1].")
    batch: int = Field(64, gt=0, description="Documents per stream batch; each takes its share of the budget.")
    queue: int = Field(1024, gt=0, description="Memory: the embeddings of the last this many documents taken.")
    memory: Literal["empty", "previous"] = Field("empty", description="What the memory starts with: empty, or up to `queue` documents the output's current version selected (a "
        "versioned output: tonight then prefers what last night's selection lacks).")


    def build(self, dirs: dict[str, Path | None], seed: int):
        from thresher.operators.subset_select import UDS

        return UDS(dict(self.by), self.alpha, self.batch, self.queue, seed, remembers=self.memory == "previous")


def odis_columns(asked: list[str], score_dir: Path | None) -> list[str]:
    """The columns ODiS reads, checked against the score files' schema (the default when none are asked)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .errors import JobError

    files = sorted((score_dir / "data").glob("*.parquet")) if score_dir else []
    if not files:
        return asked or [S.Q_HEURISTIC]
    schema = pq.read_schema(files[0])
    numeric = [f.name for f in schema if pa.types.is_floating(f.type) or pa.types.is_integer(f.type)]
    if not asked:
        found = [c for c in numeric if c.startswith("q_") and c != S.Q_LANG_SCORE]
        if not found:
            raise JobError("selection.scores: the score files hold no numeric q_* column; name the columns ODiS should use")
        return sorted(found)
    for i, c in enumerate(asked):
        if c not in numeric:
            what = "is not numeric" if c in schema.names else "is not a column of the score files"
            raise JobError(f"selection.scores.{i}: {c!r} {what} (numeric columns: {', '.join(sorted(numeric))})")
    return asked


# The strategy registry: one spec variant per strategy, told apart by `strategy`.
STRATEGIES = (QuaDMixSelection, TopKSelection, KMQSelection, UniformSelection, DSIRSelection, FacilityLocationSelection, MaxMinSelection, ODiSSelection, UDSSelection, SkillItSelection)
SelectionSpec = Annotated[Union[STRATEGIES], Field(discriminator="strategy")]
_VARIANTS = {v.model_fields["strategy"].annotation.__args__[0]: v for v in STRATEGIES}


class VersionsSpec(Strict):
    keep: int = Field(7, ge=1, description="Versions kept, the current one included; older ones are removed after each publish.")


class OutputSpec(Strict):
    path: str = Field(description="Output directory on a local or shared filesystem every Ray node sees; it appears complete (manifest last, then one rename) or not at all.")
    overwrite: bool = Field(False, description="Replace an existing output directory.")
    shard_bytes: int = Field(256 * 2**20, gt=0, description="Target uncompressed size of one shard's rows (text estimated as n_tokens x input.bytes_per_token); the zstd files are smaller.")
    row_group_rows: int = Field(8192, gt=0, description="Rows per Parquet row group, small enough to stream.")
    write_rejected: bool = Field(True, description="Also write rejected/: doc_id + reason for every valid document not selected (invalid rows are in quarantine/).")
    work_dir: str | None = Field(None, description="Checkpoints and fitted states; default OUTPUT.work beside the output. Reused by resumed and repeated jobs.")
    versions: VersionsSpec | None = Field(None, description="Publish each run as OUTPUT/versions/ID/ and move OUTPUT/latest to it atomically, with what changed against the previous version "
        "(`thresher versions OUTPUT` lists them); none = OUTPUT is the one output, replaced only with overwrite.")

    def work_path(self) -> str:
        """The work directory: work_dir, or OUTPUT.work beside the output (the one place that default is made)."""
        return self.work_dir or f"{self.path}.work"


class RaySpec(Strict):
    address: str | None = Field(None, description="Ray cluster address (host:6379, ray://host:10001 or 'auto'); none = RAY_ADDRESS when set (as in a `ray job submit` entrypoint), "
        "else start a local Ray.")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for a local Ray; none = all cores. At least one more than embedder.actors x embedder.cpus_per_actor (so at least 2 with the defaults): "
        "the embedding actors hold theirs while read tasks need a whole CPU.")
    object_store_mb: int | None = Field(2048, gt=0, description="Object store size for a local Ray, MiB.")
    buffer_mb: int = Field(
        256,
        gt=0,
        description="Object-store memory Ray Data may fill with blocks between stages (read-ahead included), MiB; bounds a streaming phase's memory whatever the corpus size.",
    )


class FitSpec(Strict):
    from_run: str = Field(description="Reuse the fitted states of an earlier run instead of fitting: k-means and cluster sizes, the scorers' states, searched parameters (its output's state/). "
        "An output directory, a version of one, a versioned output (its latest) or a manifest.json. Old documents' scores then do not move as the corpus grows.")


class JobSpec(Strict):
    input: InputSpec
    output: OutputSpec
    fit: FitSpec | None = Field(None, description="Where fitted states come from; none = fitted on this run's data.")
    embedder: EmbedderSpec = Field(default_factory=EmbedderSpec)
    clustering: ClusteringSpec = Field(default_factory=ClusteringSpec)
    scorers: ScorersSpec = Field(default_factory=ScorersSpec)
    selection: SelectionSpec = Field(default_factory=QuaDMixSelection)
    seed: int = Field(0, description="Seeds k-means and the per-document sampling uniforms.")
    ray: RaySpec = Field(default_factory=RaySpec)

    @model_validator(mode="before")
    @classmethod
    def _default_strategy(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("selection"), dict) and "strategy" not in raw["selection"]:
            raw = {**raw, "selection": {**raw["selection"], "strategy": "quadmix"}}
        return raw

    @model_validator(mode="after")
    def _room_to_read(self) -> "JobSpec":
        held = self.embedder.actors * self.embedder.cpus_per_actor
        if self.ray.address is None and self.ray.num_cpus is not None and self.embedder.device != "cuda" and self.ray.num_cpus - held < 1:
            raise ValueError(
                f"ray.num_cpus {self.ray.num_cpus} leaves {max(self.ray.num_cpus - held, 0):g} CPUs beside the embedding actors "
                f"(embedder.actors x cpus_per_actor = {held:g}) and reading needs 1: give at least {math.ceil(held) + 1}"
            )
        return self

    @model_validator(mode="after")
    def _dsir_strategy_needs_scorer(self) -> "JobSpec":
        if self.selection.strategy == "dsir" and self.scorers.dsir is None:
            raise ValueError("selection.strategy dsir needs scorers.dsir (a target corpus)")
        return self

    def side_corpora(self) -> dict[str, CorpusRef]:
        """The corpora a job reads besides its input, by the field that names them."""
        refs = self.scorers.side_corpora()
        for part in ("search", "refine"):
            if getattr(self.selection, part, None) is not None:
                refs[f"selection.{part}.validation"] = getattr(self.selection, part).validation
        return refs

    def computed_columns(self) -> set[str]:
        """Columns the score phase will have written, for checking a spec before any work."""
        from thresher.operators.signals import SIGNALS

        base = {*SIGNALS, S.N_TOKENS, S.D_CLUSTER, S.D_CENTROID_DIST, S.D_CLUSTER_SIZE, S.D_CLUSTER_RARITY}
        return base | self.scorers.writes()

    def hash(self) -> str:
        """Stable hash of the whole spec (the manifest's spec_hash)."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


class _SpecLoader(yaml.SafeLoader):
    """YAML 1.1 with YAML 1.2's floats: `1e6` is a number (PyYAML alone reads it as a string, which strict types refuse)."""


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_SpecLoader)
    except FileNotFoundError:
        raise SpecError(f"spec file not found: {path}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML/JSON: {e}") from None
    return parse_spec(raw, source=str(path))


def parse_spec(raw: object, source: str = "spec") -> JobSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: the spec must be a mapping of fields")
    for where, problem in _unusable_values(raw, ()):
        raise SpecError(f"{source}: {'.'.join(where) or '(spec)'}: {problem}")
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = list(first["loc"])
        if loc[:1] == ["selection"] and len(loc) > 1 and loc[1] in _VARIANTS:
            loc.pop(1)  # the union's tag (selection.topk.budget) is not a field the user wrote
        msg = first["msg"]
        if first["type"] == "scorer":  # raised by the registered scorer's own spec class, below scorers.NAME
            loc += first["ctx"]["path"].split(".")
            msg = first["ctx"]["msg"]
        if first["type"] == "unknown_scorer":
            loc.append(first["ctx"]["key"])
        if first["type"] == "union_tag_invalid":  # an unknown strategy
            loc.append(first["ctx"]["discriminator"].strip("'"))
            msg = f"unknown {loc[-1]} {first['ctx']['tag']!r} (known: {first['ctx']['expected_tags']})"
        msg = msg.removeprefix("Value error, ")
        field = ".".join(str(p) for p in loc)
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise SpecError(f"{source}: {field + ': ' if field else ''}{msg}{more}") from None


def _unusable_values(value: object, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Values no field accepts anywhere in a spec, free-form mappings included: NUL bytes and lone surrogates
    in strings (no path or column can hold them), non-finite numbers (a budget of 1e999 is not a budget)."""
    if isinstance(value, str):
        if "\x00" in value:
            yield where, "a NUL byte is not allowed in a string"
        elif any("\ud800" <= c <= "\udfff" for c in value):
            yield where, "a lone surrogate is not valid Unicode"
    elif isinstance(value, float) and not math.isfinite(value):
        yield where, f"{value} is not a finite number"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _unusable_values(k, where + ("(key)",))
            yield from _unusable_values(v, where + (str(k),))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _unusable_values(v, where + (str(i),))

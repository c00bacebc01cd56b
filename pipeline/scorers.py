"""The scorer registry: what a job can score its documents with, one spec class per scorer.

The counterpart of the strategy registry (`spec.STRATEGIES`). A scorer is an
operator (operators/) and a `ScorerSpec` subclass here that declares its
name, what it writes, what its fit sample must hold, the side corpora it
reads and, when it is fitted, how it fits: `fit(sample, side, seed)` returns
named `Fitted` states, saved and loaded by the `Fitted` mixin. Everything
else is derived from the registry: the spec's `scorers` section (each
registered name is a key), the fit phase's slice, the fit sample's columns,
the columns a job computes, the side corpora and the order the score phase
applies them in. Adding a scorer touches its operator, its spec class and
`register` (or the `SCORERS` tuple for a built-in one).

A scorer's `transform` appends columns, each row's values a function of
that row alone (its text, what the embed phase derived from it, and its
`sample_columns`): the score cache (`pipeline/content_cache.py`) relies on it.

Order matters only for the output's column order: scorers that read the
embedding (`uses_embedding`) run first, then the embedding is dropped, then
the others, each in registry order.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from thresher.operators import schema as S

from .spec_base import CorpusRef, Strict

if TYPE_CHECKING:
    import pyarrow as pa

    from thresher.operators.fitted import Fitted


class SideInputs:
    """What a fit may use besides its sample: side corpora's texts, embedded by the job's embedder when asked."""

    def __init__(self, texts: Callable[[CorpusRef], list[str]], embed: Callable[[list[str], bool], "pa.Table"]):
        self.texts, self.embed = texts, embed


class ScorerSpec(Strict):
    """A scorer's spec. Subclasses set the class variables and, when fitted, `fit`; the rest has defaults."""

    name: ClassVar[str]  # the key under `scorers:` and the name of its fitted state's directory
    description: ClassVar[str]  # the spec reference's line for scorers.NAME
    fitted: ClassVar[bool] = True  # fitted in the fit phase (else applied as configured, in the score phase)
    uses_embedding: ClassVar[bool] = False  # reads `emb`: applied before the score phase drops it
    always: ClassVar[bool] = False  # on in every job, with no key of its own
    state: ClassVar[str] = ""  # "module:Class" of its fitted state (a `Fitted`), imported only to load one

    @classmethod
    def state_class(cls) -> type["Fitted"]:
        module, name = cls.state.split(":")
        return getattr(importlib.import_module(module), name)

    @classmethod
    def instances(cls, scorers: "ScorersSpec") -> Iterator[tuple[str, "ScorerSpec"]]:
        """(state name, spec) for each use of this scorer in a job: by default its own key, when set."""
        if cls.always:
            yield cls.name, cls()
        elif (spec := scorers.registered().get(cls.name)) is not None:
            yield cls.name, spec

    def writes(self) -> set[str]:
        """The columns it adds to the score files."""
        raise NotImplementedError

    def sample_columns(self) -> set[str]:
        """Columns of the embed phase's output it reads besides doc_id, emb and the signals: its fit sample holds them,
        and the score cache keys a row by the text and these columns' values."""
        return set()

    def side_corpora(self) -> dict[str, CorpusRef]:
        """The side corpora it reads, by field name (scorers.NAME.FIELD in errors and fingerprints)."""
        return {}

    def fit(self, sample: "pa.Table", side: SideInputs, seed: int) -> tuple["Fitted", dict]:
        """The fitted state (its `transform` maps a batch) and facts for the manifest."""
        raise NotImplementedError

    def transform(self, batch: "pa.Table") -> "pa.Table":
        """An unfitted scorer's own map over a batch."""
        raise NotImplementedError


class HeuristicQualitySpec(ScorerSpec):
    """q_heuristic: the rank-normalised, oriented heuristic signals (operators/quality.py); in every job."""

    name: ClassVar[str] = "quality"
    state: ClassVar[str] = "thresher.operators.quality:RankQuality"
    description: ClassVar[str] = "q_heuristic, from the sig_* signals (always on)."
    always: ClassVar[bool] = True

    def writes(self) -> set[str]:
        return {S.Q_HEURISTIC}

    def fit(self, sample, side, seed):
        from thresher.operators.quality import RankQuality

        return RankQuality().fit(sample), {}


class ColumnScoreSpec(ScorerSpec):
    """An input column used as a quality score, rank-normalised into q_<column>; `scorers.columns` lists them."""

    name: ClassVar[str] = "column"
    state: ClassVar[str] = "thresher.operators.quality:RankQuality"
    description: ClassVar[str] = "Input columns used as quality scores."

    column: str = Field(description="A numeric input column to use as a quality score (written as q_<column>, rank-normalised).")
    higher_is_better: bool = Field(True, description="Direction of the score.")

    @classmethod
    def instances(cls, scorers):
        for i, spec in enumerate(scorers.columns):
            yield f"column-{i}", spec

    def writes(self) -> set[str]:
        return {f"q_{self.column}"}

    def sample_columns(self) -> set[str]:
        return {self.column}

    def fit(self, sample, side, seed):
        from thresher.operators.quality import HIGHER, LOWER, RankQuality

        return RankQuality({self.column: HIGHER if self.higher_is_better else LOWER}, output=f"q_{self.column}").fit(sample), {}


class ClassifierSpec(ScorerSpec):
    """DCLM / GPT-3 style quality classifier (operators/classifier.py): curated reference text against the pool."""

    name: ClassVar[str] = "classifier"
    state: ClassVar[str] = "thresher.operators.classifier:QualityClassifier"
    description: ClassVar[str] = "Learned quality classifier, q_classifier; none = off."
    uses_embedding: ClassVar[bool] = True

    reference: CorpusRef = Field(description="Positives: curated text the selection should resemble (DCLM / GPT-3 style).")
    pool_sample_size: int = Field(20_000, gt=0, description="Negatives: this many documents of the fit sample.")
    model: Literal["auto", "lightgbm", "logistic"] = Field("auto", description="auto = LightGBM, logistic regression when either class has under 200 examples.")

    def writes(self) -> set[str]:
        return {S.Q_CLASSIFIER}

    def side_corpora(self) -> dict[str, CorpusRef]:
        return {"reference": self.reference}

    def fit(self, sample, side, seed):
        from thresher.operators.classifier import QualityClassifier

        ref = side.embed(side.texts(self.reference), True)
        clf = QualityClassifier(model=self.model, seed=seed).fit(ref, sample.slice(0, self.pool_sample_size))
        return clf, {"classifier": {"model": clf.model_, "auc": clf.auc_, "reference_docs": clf.n_reference_, "pool_docs": clf.n_pool_}}


class DSIRSpec(ScorerSpec):
    """DSIR importance weights toward a target corpus (operators/dsir.py): u_dsir and its percentile q_dsir."""

    name: ClassVar[str] = "dsir"
    state: ClassVar[str] = "thresher.operators.dsir:DSIR"
    description: ClassVar[str] = "DSIR importance weights, u_dsir; none = off."

    target: CorpusRef = Field(description="Target documents whose n-gram distribution the selection should match.")
    num_buckets: int = Field(10_000, gt=0, description="Hashed unigram+bigram feature buckets.")
    ngrams: int = Field(2, ge=1, description="Largest n-gram order hashed.")

    def writes(self) -> set[str]:
        return {S.U_DSIR, S.Q_DSIR}

    def sample_columns(self) -> set[str]:
        return {S.TEXT}

    def side_corpora(self) -> dict[str, CorpusRef]:
        return {"target": self.target}

    def fit(self, sample, side, seed):
        from thresher.operators.dsir import DSIR

        target = side.texts(self.target)
        return DSIR(self.num_buckets, self.ngrams).fit(sample.column(S.TEXT), target), {"dsir_target_docs": len(target)}


class ProxyLMScorerSpec(ScorerSpec):
    """What the scorers read off a proxy transformer LM trained on the pool sample share (operators/proxy_scorer.py)."""

    steps: int = Field(200, gt=0, description="Training steps of the proxy transformer LM on the fit sample (GPU when present).")
    train_docs: int = Field(2_000, gt=0, description="Documents of the fit sample the proxy is trained on.")
    reference_docs: int = Field(1_000, gt=0, description="Further fit-sample documents whose scores give the q_ column, the score's percentile.")

    def sample_columns(self) -> set[str]:
        return {S.TEXT}

    def build(self, seed: int):
        raise NotImplementedError

    def fit(self, sample, side, seed):
        texts = sample.column(S.TEXT).to_pylist()
        train, held_out = texts[: self.train_docs], texts[self.train_docs : self.train_docs + self.reference_docs]
        return self.build(seed).fit(train, held_out), {f"{self.name}_train_docs": len(train), f"{self.name}_reference_docs": len(held_out) or len(train)}


class UDSSpec(ProxyLMScorerSpec):
    """UDS utility (operators/uds.py): the nuclear norm of a proxy LM's next-token logits over a document, per token."""

    name: ClassVar[str] = "uds"
    state: ClassVar[str] = "thresher.operators.uds:UDSUtility"
    description: ClassVar[str] = "UDS utility, u_uds (nuclear norm of a proxy LM's logits per token) and its percentile q_uds; none = off."

    def writes(self) -> set[str]:
        return {S.U_UDS, S.Q_UDS}

    def build(self, seed: int):
        from thresher.operators.uds import UDSUtility

        return UDSUtility(self.steps, seed=seed)


class ALLSHSpec(ProxyLMScorerSpec):
    """ALLSH local sensitivity (operators/allsh.py): how far a proxy LM's predictions move under small perturbations."""

    name: ClassVar[str] = "allsh"
    state: ClassVar[str] = "thresher.operators.allsh:LocalSensitivity"
    description: ClassVar[str] = "ALLSH local sensitivity, u_allsh (a proxy LM's largest output divergence under K perturbations) and q_allsh; none = off."

    perturbations: int = Field(3, gt=0, description="Perturbed copies per document (word dropout, span swap, n-gram substitution, in turn); the score is the largest divergence.")
    drop: float = Field(0.1, gt=0, lt=1, description="Word dropout: each token's probability of being dropped.")
    span: int = Field(3, gt=0, description="Tokens per swapped span and per substituted n-gram.")

    def writes(self) -> set[str]:
        return {S.U_ALLSH, S.Q_ALLSH}

    def build(self, seed: int):
        from thresher.operators.allsh import LocalSensitivity

        return LocalSensitivity(self.steps, seed=seed, perturbations=self.perturbations, drop=self.drop, span=self.span)


class TargetSimSpec(ScorerSpec):
    """Mean top-k cosine similarity to an embedded target set (operators/target_sim.py): u_target_sim."""

    name: ClassVar[str] = "target_sim"
    state: ClassVar[str] = "thresher.operators.target_sim:TargetSimilarity"
    description: ClassVar[str] = "Embedding similarity to a target set, u_target_sim; none = off."
    uses_embedding: ClassVar[bool] = True

    target: CorpusRef = Field(description="Target documents, embedded with the job's embedder.")
    k: int = Field(10, gt=0, description="u_target_sim = mean of the top-k cosine similarities to the targets.")

    def writes(self) -> set[str]:
        return {S.U_TARGET_SIM}

    def side_corpora(self) -> dict[str, CorpusRef]:
        return {"target": self.target}

    def fit(self, sample, side, seed):
        from thresher.operators.embed import from_fixed_list
        from thresher.operators.target_sim import TargetSimilarity

        target = side.texts(self.target)
        state = TargetSimilarity(self.k).fit(from_fixed_list(side.embed(target, False).column(S.EMB)))
        return state, {"target_sim_docs": len(target)}


class RulesSpec(ScorerSpec):
    """Heuristic rule families: each is a mapping of threshold overrides ({} = the published
    defaults), or null to turn the family off. Field names are those of
    operators/heuristic_rules.py (e.g. gopher_quality: {min_doc_words: 100})."""

    name: ClassVar[str] = "rules"
    description: ClassVar[str] = "Gopher / C4 / FineWeb rule decisions with reasons (q_rule_*); none = off, {} = all four at published thresholds."
    fitted: ClassVar[bool] = False

    gopher_quality: dict[str, Any] | None = Field(default_factory=dict, description="Gopher quality rules (Rae et al. 2021): q_rule_gopher_quality.")
    gopher_repetition: dict[str, Any] | None = Field(default_factory=dict, description="Gopher repetition rules: q_rule_gopher_repetition.")
    c4: dict[str, Any] | None = Field(default_factory=dict, description="C4 rules (Raffel et al. 2020), document-level keep/drop: q_rule_c4.")
    fineweb: dict[str, Any] | None = Field(default_factory=dict, description="FineWeb rules (Penedo et al. 2024): q_rule_fineweb.")

    @model_validator(mode="after")
    def _known_thresholds(self) -> "RulesSpec":
        from thresher.operators.heuristic_rules import rule_configs

        rule_configs(self.model_dump())  # raises naming the family and the unknown threshold
        return self

    def writes(self) -> set[str]:
        return {f"q_rule_{family}" for family, on in self.model_dump().items() if on is not None}

    def transform(self, batch):
        from thresher.operators.heuristic_rules import apply_rules, rule_configs

        return apply_rules(batch, **rule_configs(self.model_dump()))


# The registry, in the order the score phase applies them (scorers reading the embedding first).
SCORERS: list[type[ScorerSpec]] = [ClassifierSpec, TargetSimSpec, RulesSpec, HeuristicQualitySpec, ColumnScoreSpec, DSIRSpec, UDSSpec, ALLSHSpec]


def register(cls: type[ScorerSpec]) -> type[ScorerSpec]:
    """Add a scorer (it runs after the built-in ones); usable as a class decorator."""
    if cls.name in by_key() or cls.name in ScorersSpec.model_fields:
        raise ValueError(f"a scorer named {cls.name!r} is already registered")
    SCORERS.append(cls)
    return cls


def by_key() -> dict[str, type[ScorerSpec]]:
    """The scorers a spec names by key under `scorers:` (not the always-on ones, nor `columns`, a list of its own)."""
    return {cls.name: cls for cls in SCORERS if not cls.always and cls is not ColumnScoreSpec}


class DedupSpec(Strict):
    exact: bool = Field(True, description="Flag exact duplicates (same normalised text): d_exact_dup, d_exact_dup_of.")
    near: bool = Field(True, description="Flag near duplicates (MinHash LSH): d_near_dup, d_near_dup_of.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of word shingles above which documents are near duplicates.")
    num_perm: int = Field(128, gt=0, description="MinHash permutations.")
    ngram: int = Field(5, gt=0, description="Words per shingle.")
    bands: int | None = Field(None, gt=0, description="LSH bands; with rows, overrides the choice from the threshold (false-positive / false-negative areas weighted 1:19, "
        "operators/dedup.py: 16 x 8 at 0.8); none = that choice. The manifest's dedup.lsh shows what was used.")
    rows: int | None = Field(None, gt=0, description="Signature values per LSH band; given with bands (bands x rows <= num_perm).")

    @model_validator(mode="after")
    def _bands_and_rows(self) -> "DedupSpec":
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give bands and rows together, or neither (chosen from the threshold)")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class SemDeDupSpec(Strict):
    epsilon: float = Field(0.05, gt=0, lt=1, description="Duplicate when the cosine similarity to an earlier document of the cluster exceeds 1 - epsilon.")
    order: Literal["hard", "easy", "random"] = Field("hard", description="Which documents are kept first: far from the centroid (hard), close (easy) or random.")
    block: int = Field(4096, gt=0, description="Rows per block of the pairwise similarity, bounding memory for large clusters.")


class LangSpec(Strict):
    max_chars: int | None = Field(2000, gt=0, description="Characters of each document read (cost grows with length; the prefix gives the same label on 98.6% of long realmix documents); none = all.")


def _registered_schema(schema: dict[str, Any], cls: type) -> None:
    """The registered scorers as properties of `scorers` in the JSON schema (they are extra keys to pydantic)."""
    for name, scorer in by_key().items():
        sub = scorer.model_json_schema()
        schema["properties"][name] = {"anyOf": [_inlined(sub, sub.pop("$defs", {})), {"type": "null"}], "default": None, "description": scorer.description}


def _inlined(node: Any, defs: dict) -> Any:
    """A JSON schema with its local `$ref`s replaced by the definitions (pydantic would not find them in the parent's)."""
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            return _inlined(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node


class ScorersSpec(Strict):
    """The `scorers` section: one key per registered scorer (`SCORERS`), input columns as scores, the fit sample, and
    the scorers with phases of their own (lang while embedding, dedup, semdedup)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True, json_schema_extra=_registered_schema)

    lang: LangSpec | None = Field(None, description="Language ID (py3langid, shipped in its wheel): lang (ISO 639-1) and q_lang_score, computed while embedding; filter with "
        "{column: lang, values: [en]} or {column: q_lang_score, min: 0.65}, or use lang as the domain; none = off.")
    fit_sample_size: int = Field(100_000, gt=0, description="Documents sampled to fit score normalisation.")
    columns: list[ColumnScoreSpec] = Field(default_factory=list, description="Input columns used as quality scores.")
    dedup: DedupSpec | None = Field(None, description="Exact and near-duplicate flags; none = off.")
    semdedup: SemDeDupSpec | None = Field(None, description="SemDeDup within each k-means cluster: d_semdup, d_semdup_of; none = off.")

    @model_validator(mode="before")
    @classmethod
    def _registered_keys(cls, raw: Any) -> Any:
        """Every other key names a registered scorer and is validated by its spec class (null = off)."""
        if not isinstance(raw, dict):
            return raw
        known, out = by_key(), {}
        for key, value in raw.items():
            if key in cls.model_fields:
                out[key] = value
            elif key not in known:
                raise PydanticCustomError("unknown_scorer", "unknown scorer '{key}' (known: {known})", {"key": str(key), "known": ", ".join(known)})
            elif value is not None:
                try:
                    out[key] = value if isinstance(value, known[key]) else known[key].model_validate(value)
                except ValidationError as e:
                    first = e.errors()[0]
                    path = ".".join([key, *(str(p) for p in first["loc"])])
                    raise PydanticCustomError("scorer", "{msg}", {"path": path, "msg": first["msg"].removeprefix("Value error, ")}) from None
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in by_key():  # a registered scorer this job does not use
                return None
            raise

    def registered(self) -> dict[str, ScorerSpec]:
        """The keyed scorers this job turns on, by name."""
        return dict(self.__pydantic_extra__ or {})

    def enabled(self) -> list[tuple[str, ScorerSpec]]:
        """(state name, spec) of every scorer this job runs, in registry order."""
        return [pair for cls in SCORERS for pair in cls.instances(self)]

    def fitted(self) -> list[tuple[str, ScorerSpec]]:
        return [(n, s) for n, s in self.enabled() if s.fitted]

    def side_corpora(self) -> dict[str, CorpusRef]:
        """The side corpora of the scorers this job runs, by spec field (scorers.NAME.FIELD)."""
        return {f"scorers.{name}.{field}": ref for name, s in self.enabled() for field, ref in s.side_corpora().items()}

    def writes(self) -> set[str]:
        """Every column the scorers of this job add, those of lang, dedup and semdedup included."""
        cols = {c for _, s in self.enabled() for c in s.writes()}
        if self.lang:
            cols |= {S.LANG, S.Q_LANG_SCORE}
        if self.dedup and self.dedup.exact:
            cols.add(S.D_EXACT_DUP)
        if self.dedup and self.dedup.near:
            cols.add(S.D_NEAR_DUP)
        if self.semdedup:
            cols.add(S.D_SEMDUP)
        return cols

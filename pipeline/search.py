"""The search phase: QuaDMix parameters found by proxy runs over a bounded sample of the scored pool.

The sample is the `search.sample_size` eligible documents (after the
selection's filters and exclusions) with the smallest hash uniform, text
included; the budget is scaled to it by the eligible pool's size in the
budget's unit. Each proxy run is a Ray task: it selects from the sample
with one parameter set, exactly as the select phase would (`select`), and
trains the proxy on the selected text, copies counted, to score the
validation set. The sample and the validation texts are put in the object
store once. `operators/quadmix_search.py` holds the draws, the regressor and
the choice; this module feeds them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from thresher.operators import schema as S
from thresher.operators.diversity import cluster_entropy
from thresher.operators.dsir import DSIR, DSIRResample
from thresher.operators.histogram import DomainHistograms, domain_order
from thresher.operators.proxy_command import CommandProxy, ProxyCommandError
from thresher.operators.proxy_lm import NGramProxy, ProxyEvaluator
from thresher.operators.quadmix import QuaDMix, QuaDMixParams
from thresher.operators.quadmix_search import ParamSpace, Proposal, SearchResult, best_predicted, choose, fit_regressor, pick_finalist, predict, split_validation, topk_omega
from thresher.operators.selection import TopK, filter_reasons, select, uniform_from_ids

from .errors import JobError
from .plan import Slice
from .tables import domain_source, file_tables, map_files, row_count, with_domain

def make_proxy(name: str, settings) -> ProxyEvaluator:
    """The evaluator a spec's `proxy` names: ngram, transformer, or command:NAME from the operator's settings."""
    if name == "ngram":
        return NGramProxy()
    if name == "transformer":
        from thresher.operators.proxy_transformer import TransformerProxy

        return TransformerProxy()
    return CommandProxy(name.removeprefix("command:"), settings.proxy_command(name), settings.proxy_timeout_s)


def proxy_fingerprint(spec, settings) -> list[dict] | None:
    """What a command proxy's results depend on besides the spec: its argv and the content of every argument that is a file."""
    search = getattr(spec.selection, "search", None)
    if search is None or not search.proxy.startswith("command:"):
        return None
    proxy = make_proxy(search.proxy, settings)
    return [{"argv": proxy.argv, "files": {a: _sha256(Path(a)) for a in proxy.argv if Path(a).is_file()}}]


def _sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def eligible_sample(ctx, sel, seed: int, score_dir: Path, columns: list[str], size: int) -> tuple[pa.Table, float]:
    """The `size` eligible documents with the smallest hash uniform (text included), and the eligible pool's weight in the budget's unit.

    Two passes of tasks over the score files (`tables.map_files`): the first
    gives each group's pool weight and its `size` smallest uniforms, whose
    merge gives the cut-off; the second reads the text of the rows under it.
    """
    filters = sel.build_filters()
    tokens = sel.budget is not None and sel.budget.unit == "tokens"
    narrow = sorted(set(columns) | {S.DOC_ID, S.INVALID_REASON, S.N_TOKENS, domain_source(sel.domain)} | {f.column for f in filters})
    rows = row_count(score_dir / "data")
    task = (sel.domain, filters, f"search-{seed}", ctx.lift)
    us, pool = [], 0.0
    for weight, smallest, read in map_files(score_dir, _eligible_uniforms, (narrow, *task, tokens, size), rows):
        ctx.progress.add(read)
        pool += weight
        us.append(smallest)
    u_all = np.concatenate(us) if us else np.zeros(0)
    if not u_all.size or pool == 0:
        raise JobError("the search found no eligible documents (see the selection's filters)")
    cut = np.partition(u_all, size - 1)[size - 1] if u_all.size > size else 1.0
    found = [(t, u) for t, u in map_files(score_dir, _eligible_under, (narrow + [S.TEXT], *task, cut), rows) if t is not None]
    order = np.argsort(np.concatenate([u for _, u in found]), kind="stable")[:size]
    return pa.concat_tables([t for t, _ in found]).take(pa.array(order)), pool


def _eligible(files: list[str], columns: list[str], domain: str, filters: list, key: str, lift):
    """The eligible rows of some score files, a batch at a time, with their hash uniforms and the rows read."""
    for f in files:
        for t in file_tables(f, columns, lift):
            read = t.num_rows
            t = with_domain(t.filter(t.column(S.INVALID_REASON).is_null()), domain)
            t = t.filter(pa.array(np.equal(filter_reasons(t, filters), None)))
            yield t, uniform_from_ids(key, t.column(S.DOC_ID).to_pylist()), read


def _eligible_uniforms(files: list[str], columns: list[str], domain: str, filters: list, key: str, lift, tokens: bool, size: int) -> tuple[float, np.ndarray, int]:
    """Ray task: the eligible pool's weight in some files (documents, or tokens), its `size` smallest uniforms, the rows read."""
    weight, smallest, read = 0.0, np.zeros(0), 0
    for t, u, n in _eligible(files, columns, domain, filters, key, lift):
        read += n
        weight += float(np.sum(t.column(S.N_TOKENS).to_numpy(zero_copy_only=False))) if tokens else t.num_rows
        smallest = np.concatenate([smallest, u])
        if smallest.size > size:
            smallest = np.partition(smallest, size - 1)[:size]
    return weight, smallest, read


def _eligible_under(files: list[str], columns: list[str], domain: str, filters: list, key: str, lift, cut: float) -> tuple[pa.Table | None, np.ndarray]:
    """Ray task: the eligible rows of some files whose uniform is at most `cut`, and their uniforms."""
    parts, kept = [], []
    for t, u, _ in _eligible(files, columns, domain, filters, key, lift):
        parts.append(t.filter(pa.array(u <= cut)))
        kept.append(u[u <= cut])
    return (pa.concat_tables(parts) if parts else None), np.concatenate(kept) if kept else np.zeros(0)


def candidate_strategy(candidate: np.ndarray | str | DSIRResample, space: ParamSpace, max_copies: int, seed: int):
    """What a proxy run selects with: QuaDMix with a parameter vector, or a fallback finalist: top-k by one quality column,
    or DSIR resampling (its Gumbel keys drawn with the run's seed)."""
    if isinstance(candidate, DSIRResample):
        return DSIRResample(seed, candidate.center, candidate.scale)
    if isinstance(candidate, str):
        return TopK({candidate: 1.0})
    return QuaDMix(QuaDMixParams(alpha={c: 1.0 for c in space.columns}), space.params(candidate), max_copies=max_copies)


def proxy_run(candidate: np.ndarray | str | DSIRResample, sample: pa.Table, valid: list[str], space: ParamSpace, unit: str, budget: float, max_copies: int, bins: int, seed: int,
              proxy: ProxyEvaluator, per_doc: bool = False) -> dict:
    """One candidate: select from the sample as the select phase would, train the proxy on the selection, score the validation set.
    Also the selection's spread over the domains (cluster entropy of its copies, normalised by log of the domains). With
    `per_doc`, each validation text's loss too, and the loss is their mean (each text weighs the same)."""
    strategy = candidate_strategy(candidate, space, max_copies, seed)
    hist = DomainHistograms(bins)
    keys, scores = strategy.keys_and_scores(sample)
    hist.add(keys, scores, np.asarray(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False)))
    strategy.fit(hist, unit, budget)
    chosen = select(sample, strategy, seed, [])
    copies = np.asarray(chosen.column(S.SEL_COPIES).to_numpy(zero_copy_only=False))
    picked = np.flatnonzero(copies > 0)
    texts = sample.column(S.TEXT).take(pa.array(picked)).to_pylist()
    if not texts:
        return {"loss": float("nan"), "docs": 0, "copies": 0, "entropy": 0.0, **({"per_doc": [float("nan")] * len(valid)} if per_doc else {})}
    weights = copies[picked].astype(np.float64)
    docs = proxy.per_doc_loss(texts, valid, train_weights=weights) if per_doc else None
    loss = float(np.mean(docs)) if per_doc else proxy.loss(texts, valid, train_weights=weights)
    index = {d: i for i, d in enumerate(space.domains)}
    code = np.array([index[v] for v in chosen.column(S.DOMAIN).to_pylist()], np.int64)
    entropy = cluster_entropy(code, copies, normalise=True, n_clusters=len(space.domains))
    return {"loss": float(loss), "docs": int(picked.size), "copies": int(copies.sum()), "entropy": entropy, **({"per_doc": docs.tolist()} if per_doc else {})}


def search_phase(ctx, sl: Slice, d: Path, needed: dict) -> dict:
    """QuaDMix's parameter search, iterative kMQ's cluster shares or Skill-It's: whichever the selection asks for."""
    if sl.selection.strategy == "kmq":
        return refine_kmq(ctx, sl, d, needed)
    if sl.selection.strategy == "skillit":
        return refine_skillit(ctx, sl, d, needed)
    return search_quadmix(ctx, sl, d, needed)


def search_quadmix(ctx, sl: Slice, d: Path, needed: dict) -> dict:
    sel, s, seed = sl.selection, sl.selection.search, sl.seed
    columns = list(s.columns or sorted(sel.quadmix.alpha))
    dsir_dir = needed["fit"] / "dsir" if needed.get("fit") else None
    dsir = DSIRResample.from_dsir(DSIR.load(dsir_dir)) if s.fallback and dsir_dir and dsir_dir.is_dir() else None  # DSIR resampling toward scorers.dsir's target
    sample, pool = eligible_sample(ctx, sel, seed, needed["score"], columns + ([S.U_DSIR] if dsir else []), s.sample_size)
    unit = sel.budget.unit if sel.budget else "docs"
    if sel.budget is None:
        raise JobError("selection.search needs selection.budget: proxy runs compare selections of one size")
    sample_weight = float(np.sum(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False))) if unit == "tokens" else sample.num_rows
    budget = sel.budget.amount * sample_weight / pool  # the same share of the sample as of the pool
    domains = tuple(sorted(set(sample.column(S.DOMAIN).to_pylist()), key=domain_order))
    space = ParamSpace(domains, tuple(columns), s.ranges.build())
    valid, held = split_validation(ctx.side_texts(s.validation), s.holdout, seed)
    rng = np.random.default_rng(seed)
    proposal = _proposal(space, sample, unit, budget, s.anchored)
    t = time.perf_counter()
    proxy = make_proxy(s.proxy, ctx.settings)
    args = (sample, valid, space, unit, budget, proxy, sel.max_copies, sel.percentile_bins)
    sizes = [s.runs // s.rounds + (i < s.runs % s.rounds) for i in range(s.rounds)]
    anchors = proposal.anchor_points()[: sizes[0]]  # each top-k anchor is run as it is
    x = np.concatenate([anchors, proposal.draw(sizes[0] - len(anchors), rng)])
    losses = _losses(_run_all([seed] * len(x), list(x), *args))
    round_of = np.zeros(len(x), np.int64)
    for r, size in enumerate(sizes[1:], start=1):  # later rounds run the draws the regressor so far predicts best
        nxt = best_predicted(proposal, _fit(x, losses, seed), rng, s.candidates, size)
        x = np.concatenate([x, nxt])
        losses = np.concatenate([losses, _losses(_run_all([seed] * len(nxt), list(nxt), *args))])
        round_of = np.concatenate([round_of, np.full(size, r)])
        ctx.log(f"[search] round {r + 1}: {size} runs on the regressor's best draws; best so far {np.nanmin(losses):.4f}")
    run_seconds = time.perf_counter() - t
    ok = np.isfinite(losses)
    fit = _fit(x, losses, seed)
    chosen, predicted = choose(proposal, fit, rng, s.candidates, s.top_k)
    finalists = [("regressor", chosen), *((f"run {i}", x[i]) for i in np.argsort(np.where(ok, losses, np.inf), kind="stable")[: min(s.finalists, int(ok.sum()))])]
    finalists += [(f"topk {c}", c) for c in columns] if s.fallback else []
    finalists += [("dsir", dsir)] if dsir else []
    fresh = [seed + 1 + r for r in range(s.remeasure)]  # every run above selected with `seed`
    # a built-in proxy scores each held-out text: the finalists are compared text by text (a command gives one loss per run)
    docwise = not s.proxy.startswith("command:")
    got = _run_all(fresh * len(finalists), [c for _, c in finalists for _ in fresh], sample, held or valid, *args[2:], per_doc=docwise)
    final = _losses(got).reshape(len(finalists), len(fresh))
    spread = np.array([r["entropy"] for r in got]).reshape(len(finalists), len(fresh)).mean(axis=1)
    per_doc = np.array([r["per_doc"] for r in got]).reshape(len(finalists), len(fresh), -1).mean(axis=1) if docwise else None
    means = np.where(np.isfinite(final).all(axis=1), final.mean(axis=1), np.inf)  # a finalist that selected nothing on any seed is out
    win = pick_finalist(final, spread, s.diverse, per_doc)
    source, measured = finalists[win][0], float(means[win])
    quadmix = [i for i, (name, _) in enumerate(finalists) if name == "regressor" or name.startswith("run ")]
    # the parameters kept: the winner's, or under a top-k winner the best QuaDMix finalist
    best_quadmix = win if win in quadmix else quadmix[pick_finalist(final[quadmix], spread[quadmix], s.diverse, None if per_doc is None else per_doc[quadmix])]
    chosen = finalists[best_quadmix][1]
    fallback = {"strategy": "dsir"} if source == "dsir" else {"strategy": "topk", "by": {finalists[win][1]: 1.0}} if source.startswith("topk") else None
    where = "held-out validation text" if held else "the validation text (no hold-out)"
    if fallback:
        label = "DSIR resampling" if source == "dsir" else f"top-k by {finalists[win][1]}"
        ctx.warn(f"selection.search: {label} ({measured:.4f}) beat every QuaDMix finalist (best {finalists[best_quadmix][0]}, {means[best_quadmix]:.4f}) "
                 f"on {where} over {len(fresh)} fresh seeds; the job selects {label}")
    elif means[win] > means.min():
        ctx.log(f"[search] {source} ({measured:.4f}, cluster entropy {spread[win]:.3f}) is within one standard error of the lowest mean, "
                f"{finalists[int(np.argmin(means))][0]} ({means.min():.4f}, {spread[int(np.argmin(means))]:.3f}), and spreads wider: it wins")
    report = [{"finalist": name, "losses": [round(float(v), 6) for v in row], "mean": float(means[i]) if np.isfinite(means[i]) else None, "entropy": round(float(spread[i]), 4)}
              for i, ((name, _), row) in enumerate(zip(finalists, final))]
    result = SearchResult(domains, tuple(columns), tuple(np.asarray(chosen).tolist()), predicted, measured, fit.heldout_spearman, int(ok.sum()), s.ranges.model_dump(), source, fallback,
                          tuple(report))
    result.save(d / "search.json")
    (d / "regressor.txt").write_text(fit.booster_text)
    predicted_runs = np.full(len(x), np.nan)
    predicted_runs[ok] = predict(fit, x[ok])
    heldout = np.zeros(len(x), bool)
    heldout[np.flatnonzero(ok)[list(fit.heldout)]] = True
    runs = pa.table({**{n: x[:, i] for i, n in enumerate(space.feature_names())}, "loss": losses, "predicted": predicted_runs, "heldout": heldout, "round": round_of})
    pq.write_table(runs, d / "runs.parquet")
    ctx.log(f"[search] {int(ok.sum())} proxy runs in {run_seconds:.1f}s; held-out Spearman {fit.heldout_spearman:.2f}; regressor's prediction {predicted:.4f} (runs: best "
            f"{np.nanmin(losses):.4f}, median {np.nanmedian(losses):.4f}); chosen of {len(finalists)} finalists on {where}: {source}, {measured:.4f}")
    return {
        "rows": sample.num_rows,
        "runs": int(ok.sum()),
        "rounds": s.rounds,
        "proxy": s.proxy,
        "proxy_seconds": round(run_seconds, 3),
        "heldout_spearman": round(fit.heldout_spearman, 4),
        "predicted_loss": predicted,
        "measured_loss": measured,
        "chosen_from": source,
        "fallback": fallback,
        "finalists": report,
        "validation_texts": {"search": len(valid), "held_out": len(held)},
        "best_run_loss": float(np.nanmin(losses)),
        "median_run_loss": float(np.nanmedian(losses)),
        "domains": len(domains),
        "sample_budget": budget,
    }


def _fit(x: np.ndarray, losses: np.ndarray, seed: int):
    """The regressor on the runs that selected something; too few of them stop the job in one line."""
    ok = np.isfinite(losses)
    if ok.sum() < 10:
        raise JobError(f"selection.search: {int(ok.sum())} of {len(losses)} proxy runs selected any document, and the regressor needs 10; "
                       "raise selection.search.runs or the budget")
    return fit_regressor(x[ok], losses[ok], seed=seed)


def _proposal(space: ParamSpace, sample: pa.Table, unit: str, budget: float, anchored: float) -> Proposal:
    """Where the search draws: with `anchored` > 0, a share of the draws on lines from each column's top-k anchor (ω* read off
    the sample at its budget) toward every domain's top ω̄, ω̄ the budget's share of the sample."""
    weight = np.asarray(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64) if unit == "tokens" else np.ones(sample.num_rows)
    index = {d: i for i, d in enumerate(space.domains)}
    code = np.array([index[v] for v in sample.column(S.DOMAIN).to_pylist()], np.int64)
    anchors = tuple((c, tuple(topk_omega(code, np.asarray(sample.column(c).to_numpy(zero_copy_only=False), np.float64), weight, budget, len(space.domains)).tolist()))
                    for c in space.columns) if anchored > 0 else ()
    return Proposal(space, anchors, min(1.0, budget / max(float(weight.sum()), 1e-12)), anchored)


def refine_kmq(ctx, sl: Slice, d: Path, needed: dict) -> dict:
    """Iterative kMQ on the eligible sample: R rounds of budget / R, cluster weights from proxies between rounds.

    Inside a cluster documents are taken in the static kMQ order (Gumbel keys
    on quality / T), so the union of the rounds is each cluster's top share,
    and only the shares change: the select phase applies them to the whole
    pool. After each round but the last, a proxy trained on the selection so
    far scores the next `probe` candidates of every cluster (the ones the next
    round would take): a high loss means the cluster is not learned yet (the
    paper's reward gap, for pretraining). With `target_weight` w > 0 the
    score also counts closeness to the validation set: minus the loss of a
    proxy trained on it over the same candidates. Scores are z-scored over the
    clusters and combined as (1 - w) z(not learned) + w z(close); the next
    round's shares are softmax(score / T) (`subset.iterative_weights`), times
    the cluster sizes under `split: proportional`.
    """
    from thresher.operators.subset import iterative_weights, kmq_budgets

    sel, r, seed = sl.selection, sl.selection.refine, sl.seed
    sample, pool = eligible_sample(ctx, sel, seed, needed["score"], sorted(sel.by), r.sample_size)
    tokens = sel.budget.unit == "tokens"
    weight = np.asarray(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64) if tokens else np.ones(sample.num_rows)
    budget = sel.budget.amount * weight.sum() / pool
    keys = sel.build({}, seed).keys(sample)
    names = sorted(set(sample.column(S.DOMAIN).to_pylist()), key=domain_order)
    index = {n: i for i, n in enumerate(names)}
    code = np.array([index[v] for v in sample.column(S.DOMAIN).to_pylist()], np.int64)
    members = [np.flatnonzero(code == c)[np.argsort(-keys[code == c], kind="stable")] for c in range(len(names))]  # best key first
    cum = [np.cumsum(weight[m]) for m in members]
    sizes = np.array([int(round(c[-1])) for c in cum], np.int64)
    texts = sample.column(S.TEXT).to_pylist()
    valid = ctx.side_texts(r.validation) if r.target_weight > 0 else None
    proxy = make_proxy(r.proxy, ctx.settings)
    share = np.ones(len(names)) if sel.split == "equal" else sizes.astype(np.float64)
    taken = np.zeros(len(names), np.int64)
    rounds = []
    for rnd in range(r.rounds):
        goal = int(round(budget * (rnd + 1) / r.rounds))
        taken += kmq_budgets(sizes - taken, max(goal - int(taken.sum()), 0), "proportional", share)
        picked = [m[: np.searchsorted(c, t, side="right")] for m, c, t in zip(members, cum, taken)]
        if rnd == r.rounds - 1:
            break
        probes = [m[len(p) : len(p) + r.probe] for m, p in zip(members, picked)]
        probe_texts = [texts[i] for pr in probes for i in pr]
        owner = np.repeat(np.arange(len(names)), [len(pr) for pr in probes])
        chosen = [texts[i] for p in picked for i in p]
        if not probe_texts or not chosen:
            break
        not_learned = _per_cluster(proxy.per_doc_loss(chosen, probe_texts), owner, len(names))
        score = _z(not_learned)
        if valid:
            close = -_per_cluster(proxy.per_doc_loss(valid, probe_texts), owner, len(names))
            score = (1 - r.target_weight) * score + r.target_weight * _z(close)
        score = np.where(np.isnan(not_learned), np.nan, score)  # a cluster with nothing left takes no more
        w = iterative_weights(score, r.temperature)
        share = w if sel.split == "equal" else w * sizes
        rounds.append({"round": rnd + 1, "taken": dict(zip(names, taken.tolist())), "not_learned": dict(zip(names, np.round(not_learned, 4).tolist())), "weights": dict(zip(names, np.round(w,
            4).tolist()))})
    final = taken / max(int(taken.sum()), 1)
    shares = {n: float(v) for n, v in zip(names, final)}
    (d / "kmq_shares.json").write_text(json.dumps({"shares": shares, "rounds": rounds, "sample_budget": budget}, indent=1))
    ctx.log(f"[search] iterative kMQ: {len(rounds) + 1} rounds over {len(names)} clusters; shares {', '.join(f'{n} {v:.3f}' for n, v in shares.items())}")
    return {"rows": sample.num_rows, "rounds": r.rounds, "clusters": len(names), "shares": shares}


def refine_skillit(ctx, sl: Slice, d: Path, needed: dict) -> dict:
    """Skill-It on the eligible sample (operators/skillit.py): the skills graph from short proxy runs, then R rounds of budget / R.

    Skills are the domains. The sample is in its hash order and each skill is
    taken in that order, so a round adds the next documents of each skill.
    The graph's proxies train on each skill's first `graph_docs` (the base:
    those of every skill) and next `graph_docs` (skill i's addition); the
    same first documents, alone, sort the target texts into target skills.
    After each round but the last a proxy trained on everything taken so far
    scores the target texts; their mean loss per target skill, over the
    base's, is the round's evaluation. skills.json keeps the graph, the
    mixture and what was taken at every round, and the final shares.
    """
    from thresher.operators.skillit import mixture, skills_graph, target_skills
    from thresher.operators.subset import kmq_budgets

    sel, r, seed = sl.selection, sl.selection.refine, sl.seed
    sample, pool = eligible_sample(ctx, sel, seed, needed["score"], [], r.sample_size)
    tokens = sel.budget.unit == "tokens"
    weight = np.asarray(sample.column(S.N_TOKENS).to_numpy(zero_copy_only=False), np.float64) if tokens else np.ones(sample.num_rows)
    budget = sel.budget.amount * weight.sum() / pool
    names = sorted(set(sample.column(S.DOMAIN).to_pylist()), key=domain_order)
    index = {n: i for i, n in enumerate(names)}
    code = np.array([index[v] for v in sample.column(S.DOMAIN).to_pylist()], np.int64)
    members = [np.flatnonzero(code == c) for c in range(len(names))]  # the sample's hash order
    texts = sample.column(S.TEXT).to_pylist()
    valid = ctx.side_texts(r.validation)
    if not valid:
        raise JobError("selection.refine.validation has no text: Skill-It needs a target to steer toward")
    proxy = make_proxy(r.proxy, ctx.settings)
    g = r.graph_docs

    def texts_of(rows) -> list[str]:
        return [texts[i] for i in rows]

    which = target_skills(np.stack([proxy.per_doc_loss(texts_of(m[:g]), valid) for m in members]))
    targets = np.unique(which)
    owner = np.searchsorted(targets, which)

    def per_target(losses: np.ndarray) -> np.ndarray:
        return _per_cluster(losses, owner, len(targets))

    base = [i for m in members for i in m[:g]]
    before = per_target(proxy.per_doc_loss(texts_of(base), valid))
    after = np.stack([per_target(proxy.per_doc_loss(texts_of(base + list(m[g : 2 * g])), valid)) if len(m) > g else before for m in members])
    graph = skills_graph(before, after)
    cum = [np.cumsum(weight[m]) for m in members]
    sizes = np.array([int(round(c[-1])) for c in cum], np.int64)
    taken = np.zeros(len(names), np.int64)
    evaluations = [np.ones(len(targets))]  # the base's own losses, over themselves: before any round
    trajectory = []
    for rnd in range(r.rounds):
        p = mixture(graph, evaluations, r.eta, r.window)
        goal = int(round(budget * (rnd + 1) / r.rounds))
        taken += kmq_budgets(sizes - taken, max(goal - int(taken.sum()), 0), "proportional", p)
        step = {"round": rnd + 1, "mixture": dict(zip(names, np.round(p, 4).tolist())), "taken": dict(zip(names, taken.tolist()))}
        trajectory.append(step)
        if rnd == r.rounds - 1:
            break
        chosen = [i for m, c, t in zip(members, cum, taken) for i in m[: np.searchsorted(c, t, side="right")]]
        if not chosen:
            break
        evaluations.append(per_target(proxy.per_doc_loss(texts_of(chosen), valid)) / before)
        step["loss_vs_base"] = dict(zip([names[j] for j in targets], np.round(evaluations[-1], 4).tolist()))
    shares = {n: float(v) for n, v in zip(names, taken / max(int(taken.sum()), 1))}
    found = {
        "shares": shares,
        "targets": {names[j]: int(np.count_nonzero(which == j)) for j in targets},  # target skill: its target texts
        "graph": {names[i]: dict(zip([names[j] for j in targets], np.round(graph[i], 4).tolist())) for i in range(len(names))},
        "trajectory": trajectory,
        "sample_budget": budget,
    }
    (d / "skills.json").write_text(json.dumps(found, indent=1))
    ctx.log(f"[search] Skill-It: {len(names)} skills, {len(targets)} target skills, {len(trajectory)} rounds; shares {', '.join(f'{n} {v:.3f}' for n, v in shares.items())}")
    return {"rows": sample.num_rows, "rounds": r.rounds, "skills": len(names), "target_skills": len(targets), "shares": shares}


def _per_cluster(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    total = np.bincount(owner, weights=values, minlength=n)
    count = np.bincount(owner, minlength=n)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _z(x: np.ndarray) -> np.ndarray:
    sd = np.nanstd(x)
    return np.zeros_like(x) if not sd > 0 else (x - np.nanmean(x)) / sd


def _run_all(seeds: list[int], candidates: list, sample: pa.Table, valid: list[str], space: ParamSpace, unit: str, budget: float, proxy: ProxyEvaluator, max_copies: int,
             bins: int, per_doc: bool = False) -> list[dict]:
    """Every candidate's `proxy_run` (candidate i selecting with seeds[i]; loss NaN where a run selected nothing), one Ray task each.

    A transformer proxy's task takes a GPU when the cluster has one.
    """
    gpu = proxy.name == "transformer" and ray.cluster_resources().get("GPU", 0) >= 1
    task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0)(proxy_run)
    sample_ref, valid_ref = ray.put(sample), ray.put(valid)
    pending = {task.remote(c, sample_ref, valid_ref, space, unit, budget, max_copies, bins, seed, proxy, per_doc): i for i, (c, seed) in enumerate(zip(candidates, seeds))}
    results: list[dict] = [{}] * len(candidates)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            try:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, ProxyCommandError):
                    raise JobError(str(e.cause)) from None
                raise
    return results


def _losses(results: list[dict]) -> np.ndarray:
    return np.array([r["loss"] for r in results], np.float64)

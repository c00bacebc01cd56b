"""report.html: what a selection kept, in one self-contained page (inline SVG, no script, no CDN).

A job's report shows its counts, the quality-score distributions of the pool
and of the selection, each domain's share before and after, where the
selection sits between quality and diversity, and, when a QuaDMix search ran,
the regressor's predicted against the measured proxy losses. A comparison's
report puts the strategies side by side. Everything is read from the
manifest (and the search's runs.parquet), so a report can be rebuilt from
them at any time.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from thresher.operators.histogram import domain_order

POOL, SELECTION = "#9aa5b1", "#2b6cb0"
PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16", "#4a5568", "#c53030", "#276749")
W, H, PAD = 560, 260, 44
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#1a202c;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e2e8f0;padding:3px 8px;text-align:right}th{background:#f7fafc}
td:first-child,th:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:12px}.muted{color:#718096}
svg{background:#fff;border:1px solid #e2e8f0}.warn{color:#9c4221}
"""


def _e(x: object) -> str:
    return html.escape(str(x))


class Raw(str):
    """A table cell that is already HTML (a link)."""


def _fmt(v: object) -> str:
    if isinstance(v, Raw):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return f"{v:,}" if isinstance(v, int) else _e(v)


def _axes(title: str, xlabel: str, ylabel: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{_e(title)}">',
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">{_e(title)}</text>',
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 12}" y2="{H - PAD}" stroke="#4a5568"/><line x1="{PAD}" y1="26" x2="{PAD}" y2="{H - PAD}" stroke="#4a5568"/>',
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>',
        f'<text x="12" y="{H / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 12 {H / 2})">{_e(ylabel)}</text>',
    ]


def _legend(names: list[str], colors: list[str]) -> str:
    return "".join(
        f'<rect x="{W - 150}" y="{28 + 15 * i}" width="10" height="10" fill="{c}"/><text x="{W - 135}" y="{37 + 15 * i}" font-size="11">{_e(n)}</text>'
        for i, (n, c) in enumerate(zip(names, colors))
    )


def bars(title: str, labels: list[str], series: dict[str, list[float]], ylabel: str = "share") -> str:
    """Grouped bars, one group per label, one bar per series."""
    out = _axes(title, "", ylabel)
    top = max([v for s in series.values() for v in s] + [1e-12])
    n, k = max(len(labels), 1), max(len(series), 1)
    gw = (W - PAD - 20) / n
    colors = [POOL, *PALETTE]  # the pool grey, then the selections (PALETTE[0] is SELECTION)
    for j, (name, values) in enumerate(series.items()):
        for i, v in enumerate(values):
            h = (H - PAD - 30) * v / top
            out.append(f'<rect x="{PAD + 4 + i * gw + j * (gw - 6) / k:.1f}" y="{H - PAD - h:.1f}" width="{max((gw - 6) / k - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{colors[j % len(colors)]}"><title>{_e(name)} {_e(labels[i])}: {v:.4g}</title></rect>')
    step = max(1, n // 24)
    out += [f'<text x="{PAD + (i + 0.5) * gw:.1f}" y="{H - PAD + 13}" text-anchor="middle" font-size="10">{_e(lab)[:8]}</text>' for i, lab in enumerate(labels) if i % step == 0]
    out.append(f'<text x="{PAD - 4}" y="34" text-anchor="end" font-size="10">{top:.3g}</text>')
    out.append(_legend(list(series), colors))
    return "".join(out) + "</svg>"


def scatter(title: str, points: list[tuple[float, float, str]], xlabel: str, ylabel: str, diagonal: bool = False, colors: list[str] | None = None) -> str:
    """Labelled points; `diagonal` draws y = x (predicted vs measured)."""
    out = _axes(title, xlabel, ylabel)
    xs = np.array([p[0] for p in points], float)
    ys = np.array([p[1] for p in points], float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return "".join(out) + '<text x="50%" y="50%" text-anchor="middle">no data</text></svg>'
    lo_x, hi_x, lo_y, hi_y = xs[ok].min(), xs[ok].max(), ys[ok].min(), ys[ok].max()
    if diagonal:
        lo_x = lo_y = min(lo_x, lo_y)
        hi_x = hi_y = max(hi_x, hi_y)
    span_x, span_y = (hi_x - lo_x) or 1.0, (hi_y - lo_y) or 1.0
    lo_x, hi_x, lo_y, hi_y = lo_x - 0.08 * span_x, hi_x + 0.08 * span_x, lo_y - 0.08 * span_y, hi_y + 0.08 * span_y

    def px(x: float) -> float:
        return PAD + (W - PAD - 20) * (x - lo_x) / (hi_x - lo_x)

    def py(y: float) -> float:
        return H - PAD - (H - PAD - 30) * (y - lo_y) / (hi_y - lo_y)

    if diagonal:
        out.append(f'<line x1="{px(lo_x):.1f}" y1="{py(lo_y):.1f}" x2="{px(hi_x):.1f}" y2="{py(hi_y):.1f}" stroke="#cbd5e0" stroke-dasharray="4 3"/>')
    for a, v in ((lo_x, lo_x), (hi_x, hi_x)):
        out.append(f'<text x="{px(a):.1f}" y="{H - PAD + 13}" text-anchor="middle" font-size="10">{v:.4g}</text>')
    for a in (lo_y, hi_y):
        out.append(f'<text x="{PAD - 4}" y="{py(a):.1f}" text-anchor="end" font-size="10">{a:.4g}</text>')
    for i, (x, y, label) in enumerate(points):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        c = (colors or [SELECTION])[i % len(colors or [SELECTION])]
        out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{c}" fill-opacity="0.8"><title>{_e(label)}: ({x:.4g}, {y:.4g})</title></circle>')
        if len(points) <= 12 and label:
            out.append(f'<text x="{px(x) + 6:.1f}" y="{py(y) - 5:.1f}" font-size="10">{_e(label)}</text>')
    return "".join(out) + "</svg>"


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, parts: list[str]) -> str:
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{STYLE}</style></head><body>{"".join(parts)}</body></html>\n'


def _distributions(m: dict) -> list[str]:
    d = m.get("distributions") or {}
    charts = []
    for col, h in d.get("columns", {}).items():
        pool, sel = np.asarray(h["pool"], float), np.asarray(h["selected"], float)
        labels = [f"{e:.2f}" for e in np.asarray(d["edges"])[:-1]]
        charts.append(bars(col, labels, {"pool": list(pool / max(pool.sum(), 1)), "selected": list(sel / max(sel.sum(), 1))}, "share of documents"))
    return [f'<div class="grid">{"".join(charts)}</div>'] if charts else ['<p class="muted">No quality columns.</p>']



def _domains(m: dict) -> list[str]:
    doms = {k: m["domains"][k] for k in sorted(m.get("domains", {}), key=domain_order)}  # cluster 2 before 10, also after a JSON round trip
    unit = "tokens"
    pool = {k: v["before"].get(unit, 0) for k, v in doms.items()}
    sel = {k: v["after"].get(unit, 0) for k, v in doms.items()}
    tp, ts = max(sum(pool.values()), 1), max(sum(sel.values()), 1)
    labels = list(doms)
    chart = bars(f"{unit} per domain", labels, {"pool": [pool[k] / tp for k in labels], "selected": [sel[k] / ts for k in labels]}, f"share of {unit}")
    profiles = m.get("domain_profiles") or {}
    rows = [[k, ", ".join(t for t, _ in profiles.get(k, {}).get("terms", [])), v["before"].get("docs", 0), v["after"].get("docs", 0), v["before"].get("tokens", 0),
             v["after"].get("tokens", 0), (v["after"].get("tokens", 0) / v["before"]["tokens"]) if v["before"].get("tokens") else 0.0] for k, v in doms.items()]
    return [chart, _table(["domain", "most distinctive terms (c-TF-IDF)", "docs before", "docs after", "tokens before", "tokens after", "tokens kept"], rows)]


def _examples(m: dict) -> list[str]:
    """A few documents kept and dropped per domain, with their scores and reason (`pipeline/profiles.py`)."""
    profiles = m.get("domain_profiles") or {}
    if not profiles:
        return []
    quality = sorted({c for p in profiles.values() for r in p["kept"] + p["dropped"] for c in r["scores"]})
    parts = ['<p class="muted">Per domain, the first documents kept and dropped in a fixed hash order of their doc_id '
             '(a uniform sample, the same on every run of the same pool).</p>']
    for k in sorted(profiles, key=domain_order):
        p = profiles[k]
        terms = ", ".join(t for t, _ in p["terms"])
        parts.append(f"<h3>domain {_e(k)}{f': {_e(terms)}' if terms else ''}</h3>")
        rows = [["kept" if r["copies"] else "dropped", r["doc_id"], r["copies"], r["reason"] or "", *[r["scores"].get(c, "") for c in quality], r["snippet"]]
                for r in p["kept"] + p["dropped"]]
        parts.append(_table(["", "doc_id", "copies", "reason", *quality, "text"], rows) if rows else '<p class="muted">No valid document.</p>')
    return parts


def _kmq(search_dir: Path) -> list[str]:
    k = json.loads((search_dir / "kmq_shares.json").read_text())
    names = list(k["shares"])
    series = {f"round {r['round']} weights": [r["weights"].get(n, 0.0) for n in names] for r in k["rounds"]}
    series["final shares"] = [k["shares"][n] for n in names]
    return ["<h2>Iterative kMQ</h2>", bars("cluster weights after each round, and the final budget shares", names, series, "weight")]


def _skills(search_dir: Path) -> list[str]:
    k = json.loads((search_dir / "skills.json").read_text())
    names, targets = list(k["shares"]), list(k["targets"])
    series = {f"round {t['round']} mixture": [t["mixture"].get(n, 0.0) for n in names] for t in k["trajectory"]}
    series["final shares"] = [k["shares"][n] for n in names]
    graph = [[n, *(k["graph"][n].get(t, 0.0) for t in targets)] for n in names]
    return ["<h2>Skill-It</h2>", bars("the mixture at each round, and the final budget shares", names, series, "weight"),
            "<p>Skills graph A: how much training on a skill (row) lowers the loss of a target skill (column; its target texts in brackets), largest 1.</p>",
            _table(["skill", *(f"{t} ({k['targets'][t]})" for t in targets)], graph)]


def _search(search_dir: Path | None) -> list[str]:
    if search_dir and (search_dir / "kmq_shares.json").exists():
        return _kmq(search_dir)
    if search_dir and (search_dir / "skills.json").exists():
        return _skills(search_dir)
    if not search_dir or not (search_dir / "search.json").exists():
        return []
    s = json.loads((search_dir / "search.json").read_text())
    parts = ["<h2>QuaDMix parameter search</h2>", _table(["runs", "held-out Spearman", "regressor's predicted loss", "chosen", "its held-out loss"],
                                                          [[s["runs"], s["heldout_spearman"], s["predicted_loss"], s.get("source", ""), s["measured_loss"]]])]
    if s.get("finalists"):
        parts.append("<p>The finalists, each run again with fresh seeds and scored on validation text the runs never saw; the lowest mean wins or, of those within one "
                     "standard error of it, the one spreading widest over the domains (cluster entropy)"
                     f"{' (a fallback finalist won: the job selects it instead of QuaDMix)' if s.get('fallback') else ''}.</p>")
        parts.append(_table(["finalist", "held-out losses", "mean", "cluster entropy"],
                            [[f["finalist"], ", ".join(f"{v:.4f}" for v in f["losses"]), f["mean"], f.get("entropy")] for f in s["finalists"]]))
    runs_file = search_dir / "runs.parquet"
    if runs_file.exists():
        runs = pq.read_table(runs_file)
        if "predicted" in runs.column_names:
            pred, loss = runs.column("predicted").to_numpy(), runs.column("loss").to_numpy()
            held = runs.column("heldout").to_numpy(zero_copy_only=False) if "heldout" in runs.column_names else np.zeros(len(pred), bool)
            pts = [(float(p), float(y), f"run {i}{' (held out)' if h else ''}") for i, (p, y, h) in enumerate(zip(pred, loss, held))]
            colors = [PALETTE[1] if h else POOL for h in held]
            parts.append(scatter("proxy runs: loss predicted by the regressor vs measured (orange: held out of its fit)", pts, "predicted by the regressor", "measured", diagonal=True,
                                 colors=colors))
    return parts


def _changes(m: dict) -> list[str]:
    """What changed against the previous version (versioned outputs)."""
    ch = m.get("changes")
    if not ch:
        return []
    doms = ch["domains"]
    rows = [[k, v["before"], v["after"], v["after"] - v["before"]] for k, v in sorted(doms.items(), key=lambda kv: domain_order(kv[0]))]
    return [
        f"<h2>Changes against version {_e(ch['previous'])}</h2>",
        _table(["added", "kept", "dropped"], [[ch["added"], ch["kept"], ch["dropped"]]]),
        _table(["dropped because", "documents"], [[k, v] for k, v in ch["dropped_by_reason"].items()]),
        _table(["domain", "selected docs before", "after", "shift"], rows),
    ]


def _pool_index(m: dict) -> list[str]:
    """What the dedup index gained and lost against the previous run, and how many copies named an earlier run's document."""
    dd = m.get("dedup")
    if not dd:
        return []
    i = dd["index"]
    return [
        "<h2>Pool index (dedup against earlier runs)</h2>",
        _table(["documents before", "carried", "new or changed", "changed (same id, new text)", "removed with their files", "duplicates", "of an earlier run's document"],
               [[i["previous"], i["carried"], i["new"], i["replaced"], i["removed"], dd["matches"], dd["of_earlier_runs"]]]),
    ]


def _computed(m: dict) -> list[str]:
    """What this run computed of the per-document work and what it reused (pieces, the content cache)."""
    r, sc = m.get("reuse") or {}, m["timings"].get("score") or {}
    scored, hits = (0, 0) if sc.get("reused") else (sc.get("scored", ""), sc.get("cache_hits", ""))
    return [_table(["input partitions", "reused", "documents embedded", "vectors from the cache", "rows scored", "scores from the cache"],
                   [[r.get("partitions", ""), r.get("partitions_reused", ""), r.get("embedded", ""), r.get("cache_hits", ""), scored, hits]])]


def job_report(m: dict, search_dir: Path | None = None) -> str:
    """The HTML report of one published selection, from its manifest."""
    c = m["counts"]
    spec = m["spec"]
    sel, pool_div = m["diversity"]["selection"], m["diversity"]["pool"]
    parts = [
        f"<h1>thresher selection: {_e(spec['selection']['strategy'])}</h1>",
        f'<p class="muted">{_e(spec["output"]["path"])} · spec {_e(m["spec_hash"])} · accounting holds: {_e(m["accounting_holds"])}</p>',
        *[f'<p class="warn">warning: {_e(w)}</p>' for w in m.get("warnings", [])],
        *([f'<p class="muted">version {_e(m["version"]["id"])}</p>'] if m.get("version") else []),
        *([f'<p class="muted">drift: {_fmt(m["drift"]["far_share"])} of the documents lie farther from their centroid than {_fmt(m["drift"]["quantile"])} of '
           f'the clusters\' fitting sample did (about {_fmt(round(1 - m["drift"]["quantile"], 6))} when nothing moved)</p>'] if (m.get("drift") or {}).get("far_share") is not None else []),
        *_changes(m),
        *_pool_index(m),
        "<h2>Counts</h2>",
        _table(["input", "valid", "invalid", "selected docs", "copies", "selected tokens", "not selected"], [[c["input"], c["valid"], c["invalid"], c["selected_docs"], c["selected_copies"],
            c["selected_tokens"], c["not_selected"]]]),
        _table(["not selected because", "documents"], [[k, v] for k, v in c.get("not_selected_by_reason", {}).items()] + [[f"invalid: {k}", v] for k, v in c.get("invalid_by_reason", {}).items()]),
        "<h2>Quality-score distributions: pool and selection</h2>",
        *_distributions(m),
        "<h2>Domains: before and after</h2>",
        *_domains(m),
        "<h2>Documents kept and dropped, per domain</h2>",
        *_examples(m),
        "<h2>Quality and diversity</h2>",
        _table(
            ["", "cluster entropy (normalised)", "Vendi score", *[f"mean {k}" for k in (m.get("distributions") or {}).get("means", {})]],
            [
                ["pool", pool_div["cluster_entropy_normalised"], pool_div["vendi"], *[v["pool"] for v in (m.get("distributions") or {}).get("means", {}).values()]],
                ["selection", sel["cluster_entropy_normalised"], sel["vendi"], *[v["selected"] for v in (m.get("distributions") or {}).get("means", {}).values()]],
            ],
        ),
        scatter("diversity: pool and selection", [(pool_div["cluster_entropy_normalised"], pool_div["vendi"], "pool"), (sel["cluster_entropy_normalised"], sel["vendi"], "selection")],
            "cluster entropy (normalised)", "Vendi score", colors=[POOL, SELECTION]),
        *_search(search_dir),
        "<h2>Phases</h2>",
        *_computed(m),
        _table(["phase", "seconds", "reused"], [[k, v.get("seconds", ""), v.get("reused", False)] for k, v in m["timings"].items()]),
    ]
    return _page("thresher report", parts)


def compare_report(rows: list[dict], domains: dict[str, dict], verdict: dict | None = None) -> str:
    """The HTML report of a comparison: one row per strategy with each judge's loss, where the judges disagree, the
    quality-diversity trade-off, token shares per domain.

    `domains`: each strategy's manifest `domains`; its own report is at NAME/report.html.
    """
    quality = sorted({k for r in rows for k in r["mean_quality"]})
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(rows))]
    judges = sorted({j for r in rows for j in (r["judges"] or {})}, key=lambda j: (j != "ngram", j))
    parts = [
        "<h1>thresher comparison</h1>",
        _table(
            ["strategy", "docs", "tokens", *[f"mean {q}" for q in quality], "duplicate rate", "cluster entropy", "Vendi", *[f"{j} loss (mean ± sd)" for j in judges], "report"],
            [[r["strategy"], r["docs"], r["tokens"], *[r["mean_quality"].get(q, "") for q in quality], "" if r["duplicate_rate"] is None else r["duplicate_rate"], r["cluster_entropy"], r["vendi"],
                *[f"{r['judges'][j]['mean']:.4f} ± {r['judges'][j]['sd']:.4f}" if r["judges"] else "" for j in judges],
                Raw(f'<a href="{_e(r["strategy"])}/report.html">report</a>')] for r in rows],
        ),
    ]
    if verdict:
        parts.append(f'<p class="{"" if verdict["agree"] else "warn"}">Over {verdict["seeds"]} seeds, {_e(verdict["summary"])}.</p>')
    parts += [
        "<h2>Quality-diversity trade-off</h2>",
        '<div class="grid">',
        scatter("Vendi vs cluster entropy", [(r["cluster_entropy"], r["vendi"], r["strategy"]) for r in rows], "cluster entropy (normalised)", "Vendi score", colors=colors),
    ]
    for j in judges:
        parts.append(scatter(f"{j} judge's loss (lower is better) vs diversity", [(r["cluster_entropy"], r["judges"][j]["mean"] if r["judges"] else float("nan"), r["strategy"]) for r in rows],
                             "cluster entropy (normalised)", f"{j} loss on the validation set", colors=colors))
    for q in quality:
        parts.append(scatter(f"mean {q} vs diversity", [(r["cluster_entropy"], r["mean_quality"].get(q, float("nan")), r["strategy"]) for r in rows], "cluster entropy (normalised)", f"mean {q}",
            colors=colors))
    parts.append("</div>")
    if domains:
        first = next(iter(domains.values()))
        labels = sorted(first, key=domain_order)
        pool = [first[k]["before"].get("tokens", 0) for k in labels]
        series = {"pool": [v / max(sum(pool), 1) for v in pool]}
        for name, doms in domains.items():
            after = [doms.get(k, {}).get("after", {}).get("tokens", 0) for k in labels]
            series[name] = [v / max(sum(after), 1) for v in after]
        parts += ["<h2>Token share per domain</h2>", bars("share of tokens per domain: pool and each strategy", labels, series, "share of tokens")]
    return _page("thresher comparison", parts)

import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from thresher.operators import schema as S
from thresher.operators.dsir import DSIR, EPS, DSIRResample, gumbel_from_ids, ngram_features
from thresher.operators.histogram import DomainHistograms
from thresher.operators.selection import select

from .toy_corpus import generate

M64 = 2**64


def py_bucket(gram: str, num_buckets: int) -> int:
    """The documented bucket, one n-gram at a time in plain Python: fmix64(Σ b_i K^(L-1-i)) mod B."""
    h = 0
    for b in gram.encode():
        h = (h * 1099511628211 + b) % M64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) % M64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) % M64
    return (h ^ (h >> 33)) % num_buckets


def py_features(texts, num_buckets, n):
    out = []
    for i, text in enumerate(texts):
        words = re.findall(r"\w+|[^\w\s]+", (text or "").lower())
        for k in range(1, n + 1):
            out += [(i, py_bucket(" ".join(words[j : j + k]), num_buckets)) for j in range(len(words) - k + 1)]
    return sorted(out)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_vectorised_features_equal_the_plain_definition(n):
    texts = ["Hello, World!! foo_bar", None, "", "Ünïcode Straße — ok?!", "a b c d e a b", "x", "x " * 50]
    doc, buckets = ngram_features(pa.array(texts), 97, n)
    assert sorted(zip(doc.tolist(), buckets.tolist())) == py_features(texts, 97, n)
    for short in (["a b"], ["a", "b c"], [None, ""]):  # fewer tokens than n
        doc, buckets = ngram_features(pa.array(short, pa.string()), 97, n)
        assert sorted(zip(doc.tolist(), buckets.tolist())) == py_features(short, 97, n)


def test_log_weight_by_hand():
    # target: a a a b + bigrams "a b", "a a" (6 features); raw: a b c d + "a b", "c d" (6).
    B = 1 << 20
    grams = ["a", "b", "c", "d", "a b", "a a", "c d", "a c", ","]
    assert len({py_bucket(g, B) for g in grams}) == len(grams)  # no collisions: the hand counts hold
    dsir = DSIR(num_buckets=B).fit(["a b", "c d"], ["a b", "a a"])
    log = math.log
    a = log(3 / 6 + EPS) - log(1 / 6 + EPS)
    c = log(0 + EPS) - log(1 / 6 + EPS)
    # "a c": a, c and the bigram "a c" (in neither distribution: log ε - log ε = 0).
    # "B, a": b cancels (1/6 both), "," and its bigrams are unseen, a as above.
    expected = [a + c, a, 0.0, None]
    out = dsir.transform(pa.table({S.TEXT: ["a c", "B, a", "", None]})).column(S.U_DSIR).to_pylist()
    assert out[:3] == pytest.approx(expected[:3], rel=1e-6)
    assert out[3] is None

    # With one pseudo-count per bucket: p = (count + 1) / (6 + B).
    smooth = DSIR(num_buckets=B, pseudocount=1.0).fit(["a b", "c d"], ["a b", "a a"])
    z = 6 + B
    a1 = log(4 / z + EPS) - log(2 / z + EPS)
    c1 = log(1 / z + EPS) - log(2 / z + EPS)
    got = smooth.transform(pa.table({S.TEXT: ["a c"]})).column(S.U_DSIR).to_pylist()
    assert got == pytest.approx([a1 + c1], rel=1e-6)


def test_dsir_save_load_roundtrip(tmp_path):
    dsir = DSIR(num_buckets=512).fit(["the cat sat", "a dog ran far"], ["the cat", "cat cat sat"])
    dsir.save(tmp_path)
    batch = pa.table({S.TEXT: ["the cat sat on the dog", "unrelated words here", None]})
    again = DSIR.load(tmp_path)
    assert again.transform(batch).equals(dsir.transform(batch))
    assert again.raw_log_w_quantiles_ == dsir.raw_log_w_quantiles_


@pytest.fixture(scope="module")
def corpora():
    return generate(1000, seed=0), generate(300, seed=1)


@pytest.mark.parametrize("topic", ["medicine", "programming"])
def test_dsir_ranks_the_target_topic_first(corpora, topic):
    pool, other = corpora
    target = other.filter(pc.and_(pc.equal(other["topic"], topic), pc.equal(other["planted"], "clean")))
    dsir = DSIR().fit(pool.column("text"), target.column("text"))
    u = np.asarray(dsir.transform(pa.table({S.TEXT: pool.column("text")})).column(S.U_DSIR))
    topics = np.asarray(pool.column("topic").to_pylist())
    planted = np.asarray(pool.column("planted").to_pylist())
    # Prose of the topic: clean and its duplicates (junk has no topic).
    relevant = (topics == topic) & np.isin(planted, ["clean", "exact_dup", "near_dup"])
    n = int(relevant.sum())
    top = np.argsort(-u, kind="stable")[:n]
    assert relevant[top].mean() >= 0.9


def test_q_dsir_is_the_weights_percentile_in_the_pool_sample(corpora):
    pool, other = corpora
    dsir = DSIR().fit(pool.column("text"), other.filter(pc.equal(other["topic"], "medicine")).column("text"))
    out = dsir.transform(pa.table({S.TEXT: pool.column("text")}))
    u, q = np.asarray(out.column(S.U_DSIR), np.float64), np.asarray(out.column(S.Q_DSIR), np.float64)
    assert ((0 <= q) & (q <= 1)).all()
    order = np.argsort(u, kind="stable")
    assert (np.diff(q[order]) >= -1e-6).all()  # a higher weight never has a lower percentile
    assert abs(np.median(q) - 0.5) < 0.02 and np.mean(q > 0.9) == pytest.approx(0.1, abs=0.02)  # uniform over the sample it was fitted on
    null = dsir.transform(pa.table({S.TEXT: pa.array([None, "the heart"], pa.string())}))
    assert null.column(S.Q_DSIR).null_count == 1


# -- Gumbel top-k ---------------------------------------------------------------


def _pool(log_w, tokens=None):
    n = len(log_w)
    return pa.table(
        {
            S.DOC_ID: [f"doc-{i}" for i in range(n)],
            S.INVALID_REASON: pa.nulls(n, pa.string()),
            S.U_DSIR: pa.array(np.asarray(log_w, np.float32)),
            S.N_TOKENS: tokens if tokens is not None else [1] * n,
        }
    )


def _fit(strategy, batches, unit, amount, bins=4096):
    hist = DomainHistograms(bins)
    for b in batches:
        keys, scores = strategy.keys_and_scores(b)
        hist.add(keys, scores, np.asarray(b.column(S.N_TOKENS)))
    return strategy.fit(hist, unit, amount)


def _selected(strategy, batches):
    return np.concatenate([strategy.transform(b)[0] for b in batches])


def test_gumbel_noise_is_a_function_of_seed_and_doc_id():
    ids = [f"d{i}" for i in range(20000)]
    g = gumbel_from_ids(3, ids)
    assert np.array_equal(g[100:200], gumbel_from_ids(3, ids[100:200]))
    assert not np.array_equal(g, gumbel_from_ids(4, ids))
    assert abs(g.mean() - np.euler_gamma) < 0.03  # standard Gumbel: mean γ, variance π²/6
    assert abs(g.var() - np.pi**2 / 6) < 0.06


def test_gumbel_topk_is_deterministic_batch_independent_and_near_k():
    rng = np.random.default_rng(0)
    pool = _pool(rng.normal(0.0, 3.0, 5000))
    k = 700
    whole = _fit(DSIRResample(seed=1, scale=3.0), [pool], "docs", k)
    chunks = [pool.slice(i, 613) for i in range(0, pool.num_rows, 613)]
    split = _fit(DSIRResample(seed=1, scale=3.0), chunks, "docs", k)
    assert whole.threshold_ == split.threshold_
    chosen = _selected(whole, [pool])
    assert np.array_equal(chosen, _selected(split, chunks))
    assert abs(chosen.sum() - k) <= 3
    # The same k largest perturbed keys an in-memory argpartition would take, up to the boundary.
    keys = whole.keys(pool)
    exact = np.zeros(len(keys), bool)
    exact[np.argsort(-keys)[:k]] = True
    assert (chosen.astype(bool) != exact).sum() <= 6
    # A different seed draws a different sample.
    other = _selected(_fit(DSIRResample(seed=2, scale=3.0), [pool], "docs", k), [pool])
    assert (other != chosen).sum() > 100


def test_gumbel_topk_token_budget_and_select():
    pool = _pool(np.zeros(4000), tokens=[10] * 4000)
    strategy = _fit(DSIRResample(seed=0), [pool], "tokens", 5000)
    out = select(pool, strategy, seed=0, filters=[])
    copies = np.asarray(out.column(S.SEL_COPIES))
    assert set(copies.tolist()) <= {0, 1}
    assert abs(copies.sum() - 500) <= 3
    assert out.column(S.SEL_STRATEGY)[0].as_py() == "dsir"


def test_selection_frequency_follows_the_importance_weight():
    # Keep log w + g > t  <=>  P(kept) = 1 - exp(-w e^-t): proportional to w while it is small.
    w = np.repeat([1.0, 2.0, 4.0], 2000)
    pool = _pool(np.log(w))
    k = 600
    freq = np.zeros(len(w))
    seeds = range(20)
    for seed in seeds:
        s = _fit(DSIRResample(seed=seed, center=np.log(2.0), scale=2.0), [pool], "docs", k)
        picked = _selected(s, [pool])
        assert abs(picked.sum() - k) <= 3
        freq += picked
    freq /= len(seeds)
    lo, hi = 0.0, 10.0
    for _ in range(100):  # λ with Σ (1 - exp(-λ w)) = k
        lam = (lo + hi) / 2
        lo, hi = (lam, hi) if np.sum(1 - np.exp(-lam * w)) < k else (lo, lam)
    expected = 1 - np.exp(-lam * np.array([1.0, 2.0, 4.0]))
    observed = np.array([freq[:2000].mean(), freq[2000:4000].mean(), freq[4000:].mean()])
    assert observed[0] < observed[1] < observed[2]
    assert observed == pytest.approx(expected, abs=0.006)  # 3 standard errors of 40,000 draws


def test_from_dsir_centres_the_map_on_the_raw_sample():
    texts = [f"word{i % 7} word{i % 3} filler" for i in range(300)]
    dsir = DSIR(num_buckets=256).fit(texts, ["word1 word2 filler"] * 5)
    s = DSIRResample.from_dsir(dsir, seed=0)
    pool = dsir.transform(pa.table({S.DOC_ID: [str(i) for i in range(300)], S.TEXT: texts}))
    _, scores = s.keys_and_scores(pool)
    assert 0.0 < scores.min() and scores.max() < 1.0
    assert 0.2 < np.median(scores) < 0.8

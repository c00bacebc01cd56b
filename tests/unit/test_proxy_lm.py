"""The n-gram proxy against probabilities computed by hand from interpolated Kneser-Ney."""

import math

import numpy as np
import pytest

from thresher.operators.proxy_lm import NGramProxy, ProxyEvaluator, tokenize

V = 2**20  # vocab_size: the zeroth order is uniform over V tokens


def english(rng: np.random.Generator, n: int) -> list[str]:
    det, adj = ["the", "a", "every", "some"], ["small", "old", "quiet", "green", "bright"]
    noun, verb = ["cat", "river", "farmer", "city", "song", "window"], ["sees", "follows", "keeps", "remembers"]
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.integers(1, 4)):
            words += [rng.choice(det), rng.choice(adj), rng.choice(noun), rng.choice(verb), rng.choice(det), rng.choice(noun)]
            words[-1] += "."
        out.append(" ".join(words).capitalize())
    return out


def code(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        f, a, b = rng.choice(["load", "parse", "step", "emit"]), rng.choice(["x", "buf", "n"]), rng.choice(["y", "i", "k"])
        body = f"    if {a} > {rng.integers(10)}:\n        return {a} * {b} + 1\n    return {b}[{a}]"
        out.append(f"def {f}_{rng.integers(100)}({a}, {b}):\n{body}")
    return out


def test_tokenize():
    assert tokenize("Hello, World!! foo_bar") == ["hello", ",", "world", "!!", "foo_bar"]


def test_loss_by_hand():
    # Order 3, D = 1/2. Training ("A" lowercases to a), padded: <s> <s> a b </s> and <s> <s> a </s>
    # (S = <s>, E = </s>).
    # Trigrams (raw counts): SSa 2, Sab 1, abE 1, SaE 1.
    #   num = c - min(D, c): SSa 1.5, Sab .5, abE .5, SaE .5
    #   per context, c(h) and gam = Σ min(D, c): SS 2, .5;  Sa 2, 1;  ab 1, .5
    # Bigrams (continuation counts: distinct trigram types ending in them): Sa 1, ab 1, bE 1, aE 1.
    #   num .5 each;  S: c 1, gam .5;  a: c 2 (ab, aE), gam 1;  b: c 1, gam .5
    # Unigrams (distinct bigram types ending in them): a 1 (Sa), b 1 (ab), E 2 (bE, aE).
    #   num a .5, b .5, E 1.5;  total 4, gam 1.5;  floor p0 = 1/V
    proxy = NGramProxy(order=3, discount=0.5, vocab_size=V)
    train, valid = ["a b", "A"], ["a b", "c"]
    model = proxy.fit(train)
    assert model.types == (3, 4, 4) and model.collisions == (0, 0, 0)

    def p1(num):
        return (num + 1.5 / V) / 4

    p_a = (1.5 + 0.5 * (0.5 + 0.5 * p1(0.5))) / 2  # a | S S: context SS (2), then S (1)
    p_b = (0.5 + 1.0 * (0.5 + 1.0 * p1(0.5)) / 2) / 2  # b | S a: context Sa (2), then a (2)
    p_e = (0.5 + 0.5 * (0.5 + 0.5 * p1(1.5)) / 1) / 1  # E | a b: context ab (1), then b (1)
    p_c = (0.0 + 0.5 * (0.0 + 0.5 * p1(0.0)) / 1) / 2  # c | S S: c never seen, every order backs off
    p_e2 = p1(1.5)  # E | S c: contexts Sc and c unseen, the unigram alone
    nll = -np.log([p_a, p_b, p_e, p_c, p_e2])
    assert proxy.loss(train, valid) == pytest.approx(nll.mean(), abs=1e-9)
    assert proxy.per_doc_loss(train, valid) == pytest.approx([nll[:3].mean(), nll[3:].mean()], abs=1e-9)
    doc, token_nll = model.token_nll(valid)
    assert doc.tolist() == [0, 0, 0, 1, 1]
    assert token_nll == pytest.approx(nll, abs=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_sum_to_one(order):
    # Over a vocabulary of V tokens: a, b, c, </s> and V - 4 never seen, each as likely as "zz".
    model = NGramProxy(order=order, discount=0.75, vocab_size=1000).fit(["a b c a b", "b c a", "c"], np.array([1.0, 2.5, 0.3]))
    assert model.collisions == (0,) * order
    for context in ["a b", "c c", "zz zz", ""]:
        p = {}
        for w in ["a", "b", "c", "zz", ""]:
            _, nll = model.token_nll([f"{context} {w}"])
            p[w] = math.exp(-nll[len(tokenize(context))])  # the token after the context ("" scores </s>)
        assert sum(p.values()) + (1000 - 5) * p["zz"] == pytest.approx(1.0, abs=1e-12)


def test_same_distribution_beats_unrelated_text():
    rng = np.random.default_rng(0)
    prose_train, prose_valid = english(rng, 300), english(rng, 50)
    code_train, code_valid = code(rng, 300), code(rng, 50)
    proxy = NGramProxy()
    assert proxy.loss(prose_train, prose_valid) < proxy.loss(code_train, prose_valid) - 1.0
    assert proxy.loss(code_train, code_valid) < proxy.loss(prose_train, code_valid) - 1.0
    # A selection that mixes in the right text is judged better than one without it.
    assert proxy.loss(code_train[:250] + prose_train[:50], prose_valid) < proxy.loss(code_train, prose_valid)
    per_doc = proxy.per_doc_loss(prose_train, prose_valid + code_valid)
    assert per_doc[:50].max() < per_doc[50:].min()


def test_weights_equal_copies():
    rng = np.random.default_rng(1)
    train, valid = english(rng, 20) + code(rng, 20), english(rng, 10) + code(rng, 5)
    weights = rng.integers(0, 4, len(train))
    copies = [t for t, w in zip(train, weights) for _ in range(w)]
    proxy = NGramProxy(order=3, buckets=2**6)
    assert min(proxy.fit(train).collisions) > 0  # equal with shared slots too
    assert proxy.loss(train, valid, weights) == proxy.loss(copies, valid)
    assert np.array_equal(proxy.per_doc_loss(train, valid, weights), proxy.per_doc_loss(copies, valid))
    assert proxy.loss(train, valid, np.full(len(train), 2.0)) == proxy.loss(train + train, valid)
    assert proxy.loss(train, valid) != proxy.loss(train + train, valid)  # copies count: more of the same sharpens


def test_deterministic():
    rng = np.random.default_rng(2)
    train, valid = english(rng, 50) + code(rng, 50), english(rng, 10)
    weights = rng.uniform(0, 3, len(train))
    first = NGramProxy().loss(train, valid, weights)
    assert NGramProxy().loss(train, valid, weights) == first
    assert NGramProxy().loss(list(reversed(train)), valid, weights[::-1]) == pytest.approx(first, abs=1e-12)
    # The seed only moves the hash slots, so it shows where slots are shared.
    assert NGramProxy(buckets=256, seed=1).loss(train, valid, weights) != NGramProxy(buckets=256).loss(train, valid, weights)
    # Stable across processes and releases (Python's salted hash() would move the shared slots): pinned.
    tiny = NGramProxy(buckets=2**8)
    assert tiny.fit(["the cat sat on the mat.", "a dog sat on a log!"]).collisions == (1, 0, 1)
    assert tiny.loss(["the cat sat on the mat.", "a dog sat on a log!"], ["the dog sat on the mat"]) == pytest.approx(
        1.4751309370521806, abs=1e-12
    )


def test_errors():
    proxy = NGramProxy()
    with pytest.raises(ValueError, match="training text"):
        proxy.loss([], ["a b"])
    with pytest.raises(ValueError, match="validation text"):
        proxy.loss(["a b"], [])
    with pytest.raises(ValueError, match="validation text"):
        proxy.per_doc_loss(["a b"], [])
    with pytest.raises(ValueError, match="positive weight"):
        proxy.loss(["a b"], ["a"], np.zeros(1))
    with pytest.raises(ValueError, match="shape"):
        proxy.loss(["a b"], ["a"], np.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        proxy.loss(["a b", "c"], ["a"], np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="discount"):
        NGramProxy(discount=0.0)
    with pytest.raises(ValueError, match="power of two"):
        NGramProxy(buckets=1000)


def test_is_a_proxy_evaluator():
    proxy: ProxyEvaluator = NGramProxy()
    assert proxy.name == "ngram"
    assert np.isfinite(proxy.loss([""], ["", "unseen words"]))  # an empty text is one </s>

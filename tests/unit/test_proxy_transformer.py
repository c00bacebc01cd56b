"""The transformer proxy, trained for real at small sizes: discrimination, weights, determinism, errors."""

import math

import numpy as np
import pytest
import torch

from thresher.operators.proxy_lm import ProxyEvaluator, tokenize
from thresher.operators.proxy_transformer import TransformerProxy

SMALL = dict(steps=80, batch_size=16, context=32, d_model=64, n_layers=2, n_heads=4, vocab_size=1024, lr=3e-3)


def english(rng: np.random.Generator, n: int) -> list[str]:
    det, adj = ["the", "a", "every", "some", "that"], ["small", "old", "quiet", "green", "bright", "tired"]
    noun = ["cat", "river", "farmer", "city", "song", "window", "teacher", "garden"]
    verb, link = ["sees", "follows", "keeps", "remembers", "paints"], ["and", "while", "because", "but"]
    out = []
    for _ in range(n):
        clauses = []
        for _ in range(rng.integers(2, 6)):
            words = [rng.choice(w) for w in (det, adj, noun, verb, det, noun)]
            clauses.append(" ".join(words))
        out.append(" ".join(f"{c} {rng.choice(link)}" for c in clauses[:-1]).capitalize() + f" {clauses[-1]}.")
    return out


def code(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        f, a, b = (rng.choice(w) for w in (["load", "parse", "step", "emit"], ["x", "buf", "n"], ["y", "i", "k"]))
        body = f"    if {a} > {rng.integers(10)}:\n        return {a} * {b} + 1\n    return {b}[{a}]"
        out.append(f"def {f}({a}, {b}):\n{body}")
    return out


@pytest.fixture(scope="module")
def data() -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    return {"train": english(rng, 60), "valid": english(rng, 20), "code": code(rng, 20)}


@pytest.fixture(scope="module")
def proxy() -> TransformerProxy:
    return TransformerProxy(**SMALL)


def scored_tokens(texts: list[str]) -> np.ndarray:
    return np.array([len(tokenize(t)) + 1 for t in texts])


def test_default_size_is_about_one_million_parameters():
    n = TransformerProxy().n_parameters()
    assert 500_000 <= n <= 2_000_000
    assert TransformerProxy(d_model=64).n_parameters() < n
    assert TransformerProxy().device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert TransformerProxy(device="cpu").device.type == "cpu"


def test_implements_the_protocol(proxy):
    assert isinstance(proxy, TransformerProxy) and proxy.name == "transformer"
    evaluator: ProxyEvaluator = proxy
    assert callable(evaluator.loss) and callable(evaluator.per_doc_loss)


def test_same_distribution_scores_lower_and_the_model_learns(proxy, data):
    english_loss = proxy.loss(data["train"], data["valid"])
    code_loss = proxy.loss(data["train"], data["code"])
    assert english_loss < code_loss - 1.0
    assert english_loss < 0.5 * math.log(SMALL["vocab_size"] + 2)  # uniform over the ids: ln(V + 2)
    code_model_loss = proxy.loss(data["code"], data["valid"])
    assert english_loss < code_model_loss - 1.0  # the selection, not the validation set, decides


def test_longer_context_than_the_window(data):
    """Documents longer than `context` are trained and scored window by window."""
    tiny = TransformerProxy(**{**SMALL, "context": 8, "steps": 40})
    per_doc = tiny.per_doc_loss(data["train"], data["valid"])
    assert np.isfinite(per_doc).all() and scored_tokens(data["valid"]).min() > 8


def test_zero_weight_equals_removing_the_documents(proxy, data):
    train = data["train"][:30] + data["code"]
    weights = np.r_[np.ones(30), np.zeros(len(data["code"]))]
    removed = proxy.loss(data["train"][:30], data["valid"])
    assert proxy.loss(train, data["valid"], weights) == pytest.approx(removed, abs=1e-6)


def test_weights_change_the_result_and_ones_equal_none(proxy, data):
    train = data["train"][:30] + data["code"]
    base = proxy.loss(train, data["valid"])
    assert proxy.loss(train, data["valid"], np.ones(len(train))) == pytest.approx(base, abs=1e-6)
    code_heavy = proxy.loss(train, data["valid"], np.r_[np.ones(30), np.full(len(data["code"]), 20.0)])
    english_heavy = proxy.loss(train, data["valid"], np.r_[np.full(30, 2.5), np.full(len(data["code"]), 0.1)])
    assert english_heavy < base < code_heavy


def test_same_seed_same_loss_other_seed_other_loss(data):
    a = TransformerProxy(**SMALL, seed=7).loss(data["train"], data["valid"])
    b = TransformerProxy(**SMALL, seed=7).loss(data["train"], data["valid"])
    c = TransformerProxy(**SMALL, seed=8).loss(data["train"], data["valid"])
    assert a == pytest.approx(b, abs=1e-6)
    assert abs(a - c) > 1e-4


def test_global_torch_state_is_left_alone(data):
    before, threads = torch.random.get_rng_state(), torch.get_num_threads()
    TransformerProxy(**{**SMALL, "steps": 5}, threads=1).loss(data["train"], data["valid"])
    assert torch.equal(torch.random.get_rng_state(), before) and torch.get_num_threads() == threads


def test_per_doc_loss_is_one_value_per_text_and_averages_to_loss(proxy, data):
    valid = data["valid"][:10] + data["code"][:5] + [""]
    per_doc = proxy.per_doc_loss(data["train"], valid)
    assert per_doc.shape == (len(valid),) and per_doc.dtype == np.float64 and np.isfinite(per_doc).all()
    n = scored_tokens(valid)
    assert (per_doc * n).sum() / n.sum() == pytest.approx(proxy.loss(data["train"], valid), abs=1e-5)
    assert per_doc[:10].mean() < per_doc[10:15].mean()


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(batch_size=-1), dict(context=0), dict(d_model=130, n_heads=4), dict(n_layers=0),
     dict(vocab_size=0), dict(lr=0.0), dict(lr=float("nan")), dict(steps=2.5), dict(device="tpu"), dict(threads=0)],
)
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        TransformerProxy(**kwargs)


@pytest.mark.parametrize(
    "train, weights",
    [([], None), (["a b", "c d"], np.array([1.0, -1.0])), (["a b", "c d"], np.ones(3)), (["a b", "c d"], np.zeros(2)),
     (["a b", "c d"], np.array([1.0, np.inf])), (["a b", "c d"], np.ones((2, 1)))],
)
def test_bad_training_inputs_raise(train, weights):
    with pytest.raises(ValueError):
        TransformerProxy(**{**SMALL, "steps": 1}).loss(train, ["x y"], weights)


def test_no_validation_text_raises():
    with pytest.raises(ValueError):
        TransformerProxy(**{**SMALL, "steps": 1}).per_doc_loss(["a b"], [])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")
def test_cuda_runs_and_gives_a_finite_loss(data):
    proxy = TransformerProxy(**SMALL, device="cuda")
    loss = proxy.loss(data["train"], data["valid"])
    assert proxy.device.type == "cuda" and math.isfinite(loss)
    assert loss == pytest.approx(TransformerProxy(**SMALL, device="cpu").loss(data["train"], data["valid"]), abs=0.1)
    assert TransformerProxy(device="auto").device.type == "cuda"

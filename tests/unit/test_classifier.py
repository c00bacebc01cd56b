import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sklearn.metrics import roc_auc_score

from thresher.operators import schema as S
from thresher.operators.classifier import LIGHTGBM, LOGISTIC, QualityClassifier
from thresher.operators.embed import to_fixed_list
from thresher.operators.signals import add_signals

from .toy_corpus import JUNK, generate


def _docs(n, shift, rng, emb_mask=None):
    """Unit-ish embeddings around a class centre plus two signals; `shift` moves both."""
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    emb[:, 0] += 1.5 * shift
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return pa.table(
        {
            S.EMB: to_fixed_list(emb, mask=emb_mask),
            S.SIG_ALPHA_RATIO: rng.normal(0.8 + 0.1 * shift, 0.1, n),
            S.SIG_N_WORDS: rng.poisson(200 + 100 * shift, n).astype(np.int64),
        }
    )


def _scores(model, table):
    return np.asarray(model.transform(table).column(S.Q_CLASSIFIER).to_numpy(zero_copy_only=False), np.float64)


def test_lightgbm_separates_two_distributions():
    rng = np.random.default_rng(0)
    ref, pool = _docs(600, 1.0, rng), _docs(900, 0.0, rng)
    qc = QualityClassifier(seed=0).fit(ref, pool)
    assert qc.model_ == LIGHTGBM
    assert qc.feature_columns_ == [S.EMB, S.SIG_N_WORDS, S.SIG_ALPHA_RATIO]  # the sig_* columns both tables have
    assert qc.auc_ >= 0.9
    # Fresh documents from the same two distributions.
    new_ref, new_pool = _docs(300, 1.0, rng), _docs(300, 0.0, rng)
    p = np.concatenate([_scores(qc, new_ref), _scores(qc, new_pool)])
    assert 0.0 <= p.min() and p.max() <= 1.0
    assert roc_auc_score(np.repeat([1, 0], 300), p) >= 0.9
    # Deterministic: the same fit again gives the same scores.
    again = QualityClassifier(seed=0).fit(ref, pool)
    assert np.array_equal(_scores(again, new_ref), _scores(qc, new_ref))


def test_logistic_fallback_on_a_tiny_sample():
    rng = np.random.default_rng(1)
    ref, pool = _docs(30, 2.0, rng), _docs(50, 0.0, rng)
    qc = QualityClassifier().fit(ref, pool)
    assert qc.model_ == LOGISTIC  # fewer than 200 of a class
    assert qc.auc_ is not None and qc.auc_ >= 0.9
    p_ref, p_pool = _scores(qc, _docs(100, 2.0, rng)), _scores(qc, _docs(100, 0.0, rng))
    assert roc_auc_score(np.repeat([1, 0], 100), np.concatenate([p_ref, p_pool])) >= 0.9
    # Missing signals are imputed; a row without an embedding gets no score.
    odd = _docs(3, 2.0, rng, emb_mask=np.array([False, False, True]))
    odd = odd.set_column(1, S.SIG_ALPHA_RATIO, pa.array([None, 0.9, 0.9], pa.float64()))
    out = _scores(qc, odd)
    assert np.isfinite(out[:2]).all() and np.isnan(out[2])


def test_too_few_for_a_holdout_still_fits():
    rng = np.random.default_rng(2)
    qc = QualityClassifier().fit(_docs(3, 2.0, rng), _docs(40, 0.0, rng))
    assert qc.model_ == LOGISTIC and qc.auc_ is None


@pytest.mark.parametrize("model", [LIGHTGBM, LOGISTIC])
def test_save_load_gives_identical_predictions(tmp_path, model):
    rng = np.random.default_rng(3)
    qc = QualityClassifier(model=model, seed=5).fit(_docs(250, 1.0, rng), _docs(250, 0.0, rng))
    qc.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    again = QualityClassifier.load(tmp_path)
    batch = _docs(200, 0.5, rng)
    assert again.transform(batch).equals(qc.transform(batch))
    assert again.auc_ == qc.auc_ and again.model_ == model


def test_signals_alone_tell_clean_prose_from_planted_junk():
    # Real signals on a toy corpus: reference = clean prose, pool = the whole corpus.
    corpus = add_signals(generate(1000, seed=0))
    clean = corpus.filter(pc.equal(corpus["planted"], "clean"))
    junk = np.isin(np.asarray(corpus.column("planted").to_pylist()), JUNK)
    qc = QualityClassifier(features=(S.EMB, S.SIG_ALPHA_RATIO, S.SIG_STOPWORD_RATIO, S.SIG_DUP_LINE_FRAC, S.SIG_MEAN_WORD_LEN)).fit(
        clean.slice(0, 400), corpus
    )
    assert S.EMB not in qc.feature_columns_  # no embedding in these tables
    p = _scores(qc, corpus)
    assert roc_auc_score(~junk, p) >= 0.95


def test_fit_needs_a_shared_feature():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError):
        QualityClassifier(features=("sig_missing",)).fit(_docs(10, 1.0, rng), _docs(10, 0.0, rng))

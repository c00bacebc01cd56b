"""Learned quality classifier: P(reference | document), as in GPT-3 and DCLM.

GPT-3 (Brown et al. 2020) trained a logistic regression to tell curated
reference text (WebText, Wikipedia, books) from raw Common Crawl and kept
documents by its score; DCLM (Li et al. 2024) does the same with a fastText
bigram model (OpenHermes + ELI5 positives against RefinedWeb negatives).
Here positives are the user's reference documents, negatives a sample of the
pool, and the features are what thresher already computed: the `emb`
embedding concatenated with the heuristic `sig_*` signals.

Deviations, all deliberate:
- Features: a sentence embedding + heuristic signals instead of hashed
  n-grams (GPT-3) or fastText's learned bigram embeddings (DCLM); no text is
  re-tokenised.
- Model: LightGBM, or logistic regression (standardised, median-imputed
  features) when either class has fewer than `min_class_for_lightgbm`
  examples, where boosted trees overfit. `model` forces either.
- Classes are weighted to equal total weight ("balanced"), so q_classifier
  reads as P(reference) under equal priors, whatever the two sample sizes.
- `auc_` is measured on a stratified 20% held out from a first fit; the
  model kept (and saved) is then refit on every example with the same
  settings, so `auc_` estimates the procedure, not the final model. With
  fewer than 5 examples of a class there is no hold-out and `auc_` is None.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from .embed import from_fixed_list
from .fitted import Fitted
from .signals import SIGNALS
from . import schema as S

LIGHTGBM, LOGISTIC, AUTO = "lightgbm", "logistic", "auto"
MIN_CLASS_FOR_HOLDOUT = 5

LIGHTGBM_PARAMS = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 20,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
    "class_weight": "balanced",
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


class QualityClassifier(Fitted):
    """scikit-learn shaped; learned state: `feature_columns_`, `model_`, `auc_` and the model."""

    _extra_state = ("booster_",)  # saved in LightGBM's text format

    def __init__(
        self,
        features: Sequence[str] = (S.EMB, *SIGNALS),
        model: str = AUTO,
        seed: int = 0,
        min_class_for_lightgbm: int = 200,
        holdout: float = 0.2,
        n_jobs: int = 1,
    ):
        if model not in (AUTO, LIGHTGBM, LOGISTIC):
            raise ValueError(f"model must be {AUTO!r}, {LIGHTGBM!r} or {LOGISTIC!r}, got {model!r}")
        self.features = tuple(features)
        self.model = model
        self.seed = seed
        self.min_class_for_lightgbm = min_class_for_lightgbm
        self.holdout = holdout
        self.n_jobs = n_jobs

    # -- features ----------------------------------------------------------

    def _matrix(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """(features float64, rows usable) — a row without an embedding is not usable."""
        parts, usable = [], np.ones(table.num_rows, bool)
        for name in self.feature_columns_:
            column = table.column(name)
            if name == S.EMB:
                parts.append(from_fixed_list(column).astype(np.float64))
                usable &= ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
            else:
                parts.append(np.asarray(column.to_numpy(zero_copy_only=False), np.float64)[:, None])
        return np.hstack(parts), usable

    # -- fitting -----------------------------------------------------------

    def fit(self, reference: pa.Table, pool_sample: pa.Table) -> "QualityClassifier":
        """Positives: `reference`; negatives: `pool_sample`."""
        self.feature_columns_ = [f for f in self.features if f in reference.column_names and f in pool_sample.column_names]
        if not self.feature_columns_:
            raise ValueError(f"none of the features {list(self.features)} is in both tables")
        x_ref, ok_ref = self._matrix(reference)
        x_pool, ok_pool = self._matrix(pool_sample)
        x = np.vstack([x_ref[ok_ref], x_pool[ok_pool]])
        y = np.concatenate([np.ones(ok_ref.sum(), np.int8), np.zeros(ok_pool.sum(), np.int8)])
        counts = np.bincount(y, minlength=2)
        if counts.min() == 0:
            raise ValueError(f"the classifier needs both classes; got {counts[1]} reference and {counts[0]} pool rows")
        if self.model == AUTO:
            self.model_ = LIGHTGBM if counts.min() >= self.min_class_for_lightgbm else LOGISTIC
        else:
            self.model_ = self.model
        self.n_reference_, self.n_pool_ = int(counts[1]), int(counts[0])

        self.auc_ = None
        if counts.min() >= MIN_CLASS_FOR_HOLDOUT and self.holdout > 0:
            from sklearn.metrics import roc_auc_score
            from sklearn.model_selection import train_test_split

            train, test = train_test_split(np.arange(len(y)), test_size=self.holdout, stratify=y, random_state=self.seed)
            self._fit_model(x[train], y[train])
            self.auc_ = float(roc_auc_score(y[test], self.predict_proba(x[test])))
        self._fit_model(x, y)
        return self

    def _fit_model(self, x: np.ndarray, y: np.ndarray) -> None:
        if self.model_ == LIGHTGBM:
            import lightgbm

            clf = lightgbm.LGBMClassifier(**LIGHTGBM_PARAMS, random_state=self.seed, n_jobs=self.n_jobs)
            clf.fit(x, y)
            # Keep the booster as its text form reloads it: saved and in-memory predictions are identical.
            self.booster_ = lightgbm.Booster(model_str=clf.booster_.model_to_string())
        else:
            from sklearn.linear_model import LogisticRegression

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value at all imputes 0
                self.impute_ = np.nan_to_num(np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0))
            filled = self._imputed(x)
            self.mean_ = filled.mean(axis=0)
            std = filled.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
            lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=self.seed)
            lr.fit((filled - self.mean_) / self.scale_, y)
            self.coef_ = lr.coef_[0].astype(np.float64)
            self.intercept_ = float(lr.intercept_[0])

    def _imputed(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, self.impute_)

    # -- scoring -----------------------------------------------------------

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """P(reference) per feature row (float64)."""
        if len(x) == 0:
            return np.zeros(0)
        if self.model_ == LIGHTGBM:
            return np.asarray(self.booster_.predict(x, num_threads=self.n_jobs), np.float64)
        z = ((self._imputed(x) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def transform(self, batch: pa.Table) -> pa.Table:
        """Append `q_classifier` = P(reference) (float32); null where `emb` is null."""
        x, usable = self._matrix(batch)
        p = np.full(batch.num_rows, np.nan)
        p[usable] = self.predict_proba(x[usable])
        return batch.append_column(S.Q_CLASSIFIER, pa.array(p.astype(np.float32), from_pandas=True))

    # -- persistence -------------------------------------------------------

    def _save_extra(self, directory: Path) -> None:
        if self.model_ == LIGHTGBM:
            (directory / "lightgbm.txt").write_text(self.booster_.model_to_string())

    def _load_extra(self, directory: Path) -> None:
        if self.model_ == LIGHTGBM:
            import lightgbm

            self.booster_ = lightgbm.Booster(model_str=(directory / "lightgbm.txt").read_text())

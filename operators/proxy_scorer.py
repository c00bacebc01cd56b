"""Scores read off a proxy LM trained on the pool: the shared fit, model and columns of u_uds and u_allsh.

`ProxyLMScorer.fit` trains a `TransformerProxy` (operators/proxy_transformer.py)
on the fit sample's texts and keeps its weights as one flat array (`weights_`,
saved as .npy like any learned array), then reads the score's quantiles on
held-out sample texts, so `transform` appends the raw score (`u_column`) and
its percentile (`q_column`, in [0, 1], weighable like any quality score).
A subclass defines `scores(texts)`; each reads a document's first window of
`context` tokens.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa

from . import schema as S
from .fitted import Fitted
from .quality import percentile_of

QUANTILE_LEVELS = np.linspace(0.0, 1.0, 101)
BATCH = 16  # documents per forward pass


class ProxyLMScorer(Fitted):
    u_column: ClassVar[str]
    q_column: ClassVar[str]

    def __init__(self, steps: int = 200, context: int = 128, seed: int = 0, device: str = "auto"):
        self.steps, self.context, self.seed, self.device = steps, context, seed, device

    def proxy(self):
        from .proxy_transformer import TransformerProxy

        return TransformerProxy(steps=self.steps, context=self.context, seed=self.seed, device=self.device)

    def fit(self, texts: list[str], held_out: list[str]) -> "ProxyLMScorer":
        """Train on `texts`; the percentile's reference is the score over `held_out` (the training texts when none)."""
        import torch

        model = self.proxy().fit([t or "" for t in texts])
        self.weights_ = torch.cat([p.detach().float().cpu().flatten() for p in model.state_dict().values()]).numpy()
        self._model = model
        self.quantiles_ = np.quantile(self.scores([t or "" for t in (held_out or texts)]), QUANTILE_LEVELS).tolist()
        return self

    def model(self):
        """The trained proxy model (rebuilt from `weights_` after a load)."""
        import torch

        if getattr(self, "_model", None) is None:
            proxy = self.proxy()
            model = proxy.new_model()
            state, at = {}, 0
            for name, p in model.state_dict().items():
                state[name] = torch.from_numpy(self.weights_[at : at + p.numel()].copy()).view_as(p)
                at += p.numel()
            model.load_state_dict(state)
            self._model = model.to(proxy.device).eval()
        return self._model

    def windows(self, texts: list[str]) -> list[np.ndarray]:
        """Each text's first window: `<s>` and up to context - 1 token ids."""
        proxy = self.proxy()
        return [proxy.token_ids(t)[: self.context] for t in texts]

    def logits(self, windows: list[np.ndarray]):
        """Next-token logits of a batch of windows, (batch, width, vocabulary) float64, and their lengths; rows past a
        window's length are padding (the model is causal: a row never sees the padding after it)."""
        import torch

        proxy = self.proxy()
        width = max(len(w) for w in windows)
        ids = torch.tensor(np.stack([np.pad(w, (0, width - len(w))) for w in windows])).to(proxy.device)
        lengths = torch.tensor([len(w) for w in windows], device=proxy.device)
        return self.model()(ids).double(), lengths

    def scores(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def transform(self, batch: pa.Table) -> pa.Table:
        text = batch.column(S.TEXT)
        valid = np.asarray(text.is_valid().to_numpy(zero_copy_only=False))
        values = np.full(batch.num_rows, np.nan)
        if valid.any():
            texts = text.to_pylist()
            values[valid] = self.scores([texts[i] for i in np.flatnonzero(valid)])
        q = percentile_of(values, np.asarray(self.quantiles_), QUANTILE_LEVELS)
        return batch.append_column(self.u_column, pa.array(values, pa.float64(), mask=~valid)).append_column(self.q_column, pa.array(q, pa.float64(), mask=~valid))

"""Transformer proxy evaluator: a ~1M-parameter causal LM trained for a fixed number of steps.

RegMix (Liu et al. 2024, "RegMix: Data Mixture as Regression") judges candidate data
mixtures by training a tiny LM (~1M parameters) on each for a fixed budget and reading its
validation loss, and reports that the tiny models rank mixtures as large ones do.
`TransformerProxy` is such a proxy behind the `ProxyEvaluator` interface of
operators/proxy_lm.py, in place of `NGramProxy`: it learns structure beyond a trigram
window, at a far higher cost. One run at the defaults, training on 500 realmix documents
and scoring its 426k-token eval set, took 35-44 s (NGramProxy: 1 s) on the shared 2 vCPU
VM at load 6, on 1 thread (bench/bench_proxy_transformer.py).

Text: proxy_lm's `tokenize` (lowercased `\\w+|[^\\w\\s]+`); a token's id is 2 + its stable
hash (`_token_hash`, blake2b-64, cached per text) mod vocab_size. Each text is `<s>` (id 0,
context only, never scored) tokens `</s>` (id 1, scored); loss: nats per scored token.

Model: pre-LayerNorm decoder blocks (causal self-attention, GELU feed-forward 4 x d_model),
learned positions, final LayerNorm, output tied to the input embedding, no dropout; the
defaults (d_model 128, 2 layers, 4 heads, context 128) give 0.94M parameters.

Training: `steps` AdamW steps (betas 0.9 / 0.95, weight decay 0.1, linear warmup over the
first 10% of the steps, cosine decay to 0 after), gradient norm clipped at 1.0. Each step
is `batch_size` windows of `context` inputs and their next tokens, each cut from one
document: the document is drawn with probability proportional to its scored tokens times
its weight (copies, fractions allowed, 0 excludes it), the start uniformly from those
where the window fits (0 for a shorter document, whose window is padded; padding is never
scored). Evaluation: each validation text is cut into consecutive non-overlapping windows
of `context` inputs, each scored token predicted once from the tokens before it in its
window only (the first window starts at `<s>`, each later one at the previous window's
last target), as in training, where windows start anywhere.

Threads: torch runs on `threads` intra-op threads (default 1; None: torch's setting) while
training and scoring, restored after: on the loaded 2 vCPU VM 50 steps took 13 s on 1 thread,
62 s on 2. Batch 8 x 128: at 16 x 128 (34 MB of logits, over glibc's 32 MB mmap threshold)
a quarter of the time was system time, at 8 x 128 a tenth.

Determinism: weights are initialised under `torch.random.fork_rng` seeded from `seed` (the
global generator is restored after) and windows are drawn by a numpy Generator seeded from
`seed`; there is no dropout. Same inputs, seed and threads give the same loss on one CPU
setup; CUDA gives slightly different losses and need not repeat them exactly.

Deviations from RegMix:
- Hashed words into 4,096 buckets instead of a BPE tokenizer: colliding words share an id,
  and the losses are per word, not comparable to subword losses.
- 200 steps of 8 x 128 tokens (0.2M training tokens) instead of 1B tokens: the proxy sees
  a sample of each selection, and its loss says what it learns in a fixed budget, not where
  it would converge. On realmix, reordering the documents (a new draw of windows) moved the
  loss by 0.02-0.05 nats; the two selections of the bench differ by 0.35.
- Windows never cross documents (no packing); the "1M" counts every parameter, the
  embedding (0.53M) included; RegMix's regression over many mixtures lives elsewhere.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .proxy_lm import doc_hashes, training_weights

BOS_ID, EOS_ID = 0, 1
_EVAL_BATCH = 8  # validation windows per forward pass (17 MB of logits at the defaults, see Threads)


def _positive_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


class _Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.ff(self.ln2(x))


class _LM(nn.Module):
    def __init__(self, n_ids: int, context: int, d_model: int, n_layers: int, n_heads: int):
        super().__init__()
        self.tok, self.pos = nn.Embedding(n_ids, d_model), nn.Embedding(context, d_model)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        self.blocks = nn.ModuleList(_Block(d_model, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits, (batch, time, n_ids)."""
        x = self.tok(ids) + self.pos.weight[: ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln(x) @ self.tok.weight.T


class TransformerProxy:
    """Tiny causal transformer LM proxy, RegMix-style (see the module docstring)."""

    name = "transformer"

    def __init__(
        self, steps: int = 200, batch_size: int = 8, context: int = 128, d_model: int = 128, n_layers: int = 2,
        n_heads: int = 4, vocab_size: int = 4096, lr: float = 3e-3, seed: int = 0, device: str = "auto",
        threads: int | None = 1,
    ):
        for arg, value in (("steps", steps), ("batch_size", batch_size), ("context", context), ("d_model", d_model),
                           ("n_layers", n_layers), ("n_heads", n_heads), ("vocab_size", vocab_size)):
            if not _positive_int(value):
                raise ValueError(f"TransformerProxy {arg} must be a positive integer, got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"TransformerProxy d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"TransformerProxy lr must be positive and finite, got {lr!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise ValueError(f"TransformerProxy device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("TransformerProxy device='cuda' but CUDA is not available")
        if threads is not None and not _positive_int(threads):
            raise ValueError(f"TransformerProxy threads must be None or a positive integer, got {threads!r}")
        self.steps, self.batch_size, self.context = steps, batch_size, context
        self.d_model, self.n_layers, self.n_heads, self.vocab_size = d_model, n_layers, n_heads, vocab_size
        self.lr, self.seed, self.device, self.threads = lr, seed, torch.device(device), threads

    @contextmanager
    def torch_threads(self) -> Iterator[None]:
        """Torch on `threads` intra-op threads inside the block, its setting restored after."""
        before = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def token_ids(self, text: str) -> np.ndarray:
        """`<s>`, the text's token ids, `</s>`."""
        ids = (doc_hashes(text)[:-1] % np.uint64(self.vocab_size)).astype(np.int64) + 2
        return np.concatenate(([BOS_ID], ids, [EOS_ID]))

    def new_model(self) -> _LM:
        """A freshly initialised model of these settings (weights drawn from `seed`)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return _LM(self.vocab_size + 2, self.context, self.d_model, self.n_layers, self.n_heads)

    def n_parameters(self) -> int:
        """Parameters of the model these settings build (the tied embedding counted once)."""
        return sum(p.numel() for p in self.new_model().parameters())

    def fit(self, train_texts: Sequence[str], train_weights: np.ndarray | None = None) -> nn.Module:
        """Train a fresh model on the texts, each drawn in proportion to `train_weights` (default 1)."""
        weights, keep = training_weights(self.name, train_texts, train_weights)
        docs = [self.token_ids(train_texts[i]) for i in keep]
        sizes = np.array([len(d) for d in docs], np.int64)  # scored tokens + 1
        offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        stream = np.concatenate(docs)
        p = (sizes - 1) * weights[keep]
        rng = np.random.default_rng(self.seed)
        C, B = self.context, self.batch_size
        doc = rng.choice(len(docs), size=(self.steps, B), p=p / p.sum())
        start = (rng.random((self.steps, B)) * np.maximum(sizes[doc] - C, 1)).astype(np.int64)
        span = np.arange(C + 1)
        with self.torch_threads():
            model = self.new_model().to(self.device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=self.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
            warmup = max(1, self.steps // 10)
            for step in range(self.steps):
                decay = 0.5 + 0.5 * math.cos(math.pi * (step - warmup) / max(1, self.steps - warmup))
                opt.param_groups[0]["lr"] = self.lr * ((step + 1) / warmup if step < warmup else decay)
                d = doc[step, :, None]
                pos = start[step, :, None] + span  # positions in the document, padded past its end
                tokens = stream[offsets[d] + np.minimum(pos, sizes[d] - 1)]
                window = torch.from_numpy(np.where(pos < sizes[d], tokens, -100)).to(self.device)
                logits = model(window[:, :-1].clamp(min=0))
                loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten(), ignore_index=-100)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
        return model.eval()

    def token_nll(self, model: nn.Module, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(text index, negative log-likelihood in nats) of every scored token of `texts`."""
        if len(texts) == 0:
            raise ValueError("TransformerProxy needs at least one validation text")
        C = self.context
        windows, owner = [], []
        for i, text in enumerate(texts):
            ids = self.token_ids(text)
            for s in range(0, len(ids) - 1, C):
                windows.append(ids[s : s + C + 1])
                owner.append(i)
        nll = []
        with torch.inference_mode(), self.torch_threads():
            for b in range(0, len(windows), _EVAL_BATCH):
                chunk = windows[b : b + _EVAL_BATCH]
                width = max(len(w) for w in chunk)
                batch = torch.tensor(np.stack([np.pad(w, (0, width - len(w)), constant_values=-100) for w in chunk]))
                batch = batch.to(self.device)
                target = batch[:, 1:].flatten()
                out = F.cross_entropy(model(batch[:, :-1].clamp(min=0)).flatten(0, 1), target, reduction="none")
                nll.append(out[target >= 0].double().cpu().numpy())  # row-major: window by window
        counts = np.array([len(w) - 1 for w in windows])
        return np.repeat(np.array(owner), counts), np.concatenate(nll)

    def loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> float:
        """Mean negative log-likelihood in nats over every validation token (`</s>` included)."""
        _, nll = self.token_nll(self.fit(train_texts, train_weights), valid_texts)
        return float(nll.mean())

    def per_doc_loss(
        self, train_texts: Sequence[str], valid_texts: Sequence[str], train_weights: np.ndarray | None = None
    ) -> np.ndarray:
        """Mean negative log-likelihood in nats over each validation text's tokens (`</s>` included)."""
        doc, nll = self.token_nll(self.fit(train_texts, train_weights), valid_texts)
        return np.bincount(doc, nll, minlength=len(valid_texts)) / np.bincount(doc, minlength=len(valid_texts))

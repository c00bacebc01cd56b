"""UDS utility: u_uds, the nuclear norm of a proxy LM's next-token logits over a document, per token.

UDS (Utility-Diversity Sampling for efficient online batch selection in SFT;
reference code gfyddha/UDS, `UDSamplingTrainer.compute_top_index`) scores each
example of a batch by the sum of the singular values of the model's logits
(tokens x vocabulary): a model that is confident in one direction gives a
near rank-one matrix, an example whose next-token predictions spread over many
directions gives a large nuclear norm, and UDS prefers those. Its diversity
term (distance to a queue of the examples already taken) is the `uds`
strategy's, not this score's.

    u_uds(d) = ||Z_d||_* / L_d,  Z_d = the logits of the L_d tokens of d's first window

and q_uds, its percentile among the pool sample's documents the proxy was not
trained on (as q_dsir is u_dsir's), so UDS utility can be weighed as a quality
score (top-k, QuaDMix's alpha) like any other.

Deviations that batch curation forces:
- The model: UDS reads the logits of the model being fine-tuned, online. Here
  a `TransformerProxy` (operators/proxy_transformer.py) trained for `steps` on
  the fit sample (the pool) stands in, fitted once per job and saved with the
  job's state; a night reusing the state scores with the same model.
- One window: the logits of a document's first `context` tokens (the proxy's
  window, with its `<s>`), not of a padded training batch.
- Length: the reference sums the singular values of a padded batch's logits;
  here each document's own L rows, divided by L, so a long and a short
  document compare. (The paper's own normalisation could not be checked from
  this machine; the issue asks for a length-normalised score.)
"""

from __future__ import annotations

import numpy as np

from . import schema as S
from .proxy_scorer import BATCH, ProxyLMScorer


def nuclear_norm(logits: np.ndarray) -> float:
    """The sum of the singular values of a matrix."""
    return float(np.linalg.svd(np.asarray(logits, np.float64), compute_uv=False).sum())


class UDSUtility(ProxyLMScorer):
    """u_uds and q_uds from the proxy trained on the pool sample (operators/proxy_scorer.py)."""

    u_column, q_column = S.U_UDS, S.Q_UDS

    def scores(self, texts: list[str]) -> np.ndarray:
        """u_uds of each text."""
        import torch

        proxy = self.proxy()
        windows = self.windows(texts)
        out = np.zeros(len(texts), np.float64)
        with torch.inference_mode(), proxy.torch_threads():
            for b in range(0, len(windows), BATCH):
                logits, lengths = self.logits(windows[b : b + BATCH])
                logits *= (torch.arange(logits.shape[1], device=lengths.device)[None, :] < lengths[:, None])[..., None]  # padding rows: zero singular values
                # singular values of Z are the square roots of the eigenvalues of Z Z^T (width x width, not width x vocabulary)
                norms = torch.linalg.eigvalsh(logits @ logits.transpose(1, 2)).clamp(min=0).sqrt().sum(dim=1)
                out[b : b + len(norms)] = (norms / lengths).cpu().numpy()
        return out

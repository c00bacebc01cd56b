"""ALLSH local sensitivity: JS by hand, the three perturbations, a perturbation that moves nothing scores 0, and
u_allsh equal to the largest divergence of the proxy's own mean distributions."""

import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from thresher.operators import schema as S
from thresher.operators.allsh import LocalSensitivity, js_divergence, perturb

from thresher.demo_corpus import generate


def test_js_divergence_by_hand():
    assert js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(2))  # disjoint: ln 2
    assert js_divergence([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0)
    # m = (0.75, 0.25): KL(p||m) = 0.5 ln(2/3) + 0.5 ln 2 = 0.143841, KL(q||m) = ln(4/3) = 0.287682 -> 0.215762
    assert js_divergence([0.5, 0.5], [1.0, 0.0]) == pytest.approx((0.5 * math.log(2 / 3) + 0.5 * math.log(2) + math.log(4 / 3)) / 2)


def test_the_three_perturbations():
    window = np.array([0, 10, 11, 12, 13, 14, 15, 16, 17])
    rng = np.random.default_rng(0)
    dropped = perturb(window, "dropout", rng, 0.1, 3)
    assert dropped[0] == 0 and len(dropped) < len(window) and set(dropped) <= set(window)
    assert list(dropped) == [t for t in window if t in set(dropped)]  # order kept
    swapped = perturb(window, "span_swap", rng, 0.1, 3)
    assert swapped[0] == 0 and sorted(swapped) == sorted(window) and (swapped != window).sum() == 6  # two 3-spans exchanged
    substituted = perturb(window, "ngram_substitution", rng, 0.1, 3)
    assert len(substituted) == len(window) and substituted[0] == 0 and 0 < (substituted != window).sum() <= 3
    tiny = np.array([0, 42])  # <s> and one token: nothing to drop, swap or substitute
    assert all(np.array_equal(perturb(tiny, k, rng, 0.1, 3), tiny) for k in ("dropout", "span_swap", "ngram_substitution"))


def test_u_allsh_is_the_largest_divergence_and_zero_when_nothing_moves(tmp_path):
    texts = generate(40, seed=2).column("text").to_pylist()
    allsh = LocalSensitivity(steps=3, context=16, device="cpu").fit(texts[:30], texts[30:])
    empty = ""  # <s> and </s>: one token after <s>, so every perturbation is the window itself
    got = allsh.scores([texts[0], empty])
    assert got[1] == pytest.approx(0.0, abs=1e-12) and got[0] > 0
    window = allsh.windows([texts[0]])[0]
    copies = allsh.perturbed(window)
    assert len(copies) == 3 and all(not np.array_equal(c, window) for c in copies)
    model = allsh.model()

    def pbar(w):
        with torch.inference_mode():
            return torch.softmax(model(torch.tensor(w[None, :]))[0].double(), -1).mean(0).numpy()

    assert got[0] == pytest.approx(max(js_divergence(pbar(window), pbar(c)) for c in copies), rel=1e-6)
    assert allsh.perturbed(window)[0].tolist() == copies[0].tolist()  # the same copies every time: a function of the text
    allsh.save(tmp_path / "allsh")
    out = LocalSensitivity.load(tmp_path / "allsh").transform(pa.table({S.TEXT: pa.array([texts[0], None])}))
    assert out.column(S.U_ALLSH).to_pylist()[0] == pytest.approx(got[0], rel=1e-6) and out.column(S.U_ALLSH).to_pylist()[1] is None
    assert 0 <= out.column(S.Q_ALLSH).to_pylist()[0] <= 1

"""UDS utility: the nuclear norm by hand, u_uds from the proxy's own logits, saved and loaded unchanged."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from thresher.operators import schema as S
from thresher.operators.uds import UDSUtility, nuclear_norm

from thresher.demo_corpus import generate


def test_nuclear_norm_of_a_3x3_matrix_by_hand():
    # [[1, 1], [1, 1]] has eigenvalues 2 and 0, so this symmetric matrix has singular values 2, 0 and 2
    assert nuclear_norm(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 2]])) == pytest.approx(4.0)
    assert nuclear_norm(np.array([[3, 0, 0], [0, -4, 0], [0, 0, 0]])) == pytest.approx(7.0)  # |3| + |-4|
    assert nuclear_norm(np.array([[1.0, 2.0, 3.0]])) == pytest.approx(np.sqrt(14))  # one row: its length


def test_u_uds_is_the_nuclear_norm_of_the_proxys_logits_per_token(tmp_path):
    texts = generate(40, seed=1).column("text").to_pylist()
    uds = UDSUtility(steps=3, context=16, device="cpu").fit(texts[:30], texts[30:])
    short, long = "a short text", texts[0]
    got = uds.scores([short, long])
    proxy = uds.proxy()
    for text, value in ((short, got[0]), (long, got[1])):
        window = proxy.token_ids(text)[:16]
        with torch.inference_mode():
            logits = uds.model()(torch.tensor(window[None, :]))[0].double().numpy()
        assert logits.shape == (len(window), 4098)
        assert value == pytest.approx(nuclear_norm(logits) / len(window), rel=1e-6)
    assert uds.scores([short])[0] == pytest.approx(got[0], rel=1e-6)  # padding in a batch changes nothing (float32 logits)
    uds.save(tmp_path / "uds")
    loaded = UDSUtility.load(tmp_path / "uds")
    out = loaded.transform(pa.table({S.TEXT: pa.array([short, None, long])}))
    values = out.column(S.U_UDS).to_pylist()
    assert values[1] is None and values[0] == pytest.approx(got[0], rel=1e-6) and values[2] == pytest.approx(got[1], rel=1e-6)
    # q_uds: the percentile among the 10 held-out texts (their own u_uds spread over [0, 1])
    held = loaded.scores(texts[30:])
    q = loaded.transform(pa.table({S.TEXT: pa.array(texts[30:])})).column(S.Q_UDS).to_numpy()
    assert q.min() == 0.0 and q.max() == 1.0 and np.array_equal(np.argsort(q, kind="stable"), np.argsort(held, kind="stable"))
    assert out.column(S.Q_UDS).to_pylist()[1] is None

"""Same spec, different partitioning -> same selection; the real MiniLM end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from thresher.operators.embed import Embedder, from_fixed_list, resolve_model
from thresher.pipeline.runner import keys_for, run

from .helpers import make_spec, selection, write_corpus


def test_selection_does_not_depend_on_batching_or_parallelism(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 1500)
    runs = []
    for i, embedder in enumerate([{"batch_size": 64, "actors": 1}, {"batch_size": 700, "actors": 2, "cpus_per_actor": 0.5}]):
        spec = make_spec(corpus, tmp_path / f"out{i}", embedder=embedder, selection={"budget": {"unit": "tokens", "amount": 200_000}})
        m = run(spec, log=lambda m: None, progress=False)
        assert "reused" not in m["timings"]["embed"]  # separate work dirs: really computed twice
        runs.append(selection(Path(spec.output.path)))
    assert runs[0] == runs[1]
    assert len(runs[0]) > 100


def test_minilm_end_to_end(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 300)
    spec = make_spec(
        corpus,
        tmp_path / "out",
        embedder={"model": "minilm", "batch_size": 64, "model_batch_size": 32},
        clustering={"n_clusters": 6},
        selection={"budget": {"unit": "docs", "amount": 100}},
    )
    m = run(spec, log=lambda m: None, progress=False)
    assert m["counts"]["input"] == 300 and m["accounting_holds"]
    assert m["timings"]["embed"]["model"] == "minilm"
    emb_dir = Path(spec.output.path).with_suffix(".work") / f"embed-{keys_for(spec)['embed']}" / "data"
    table = pq.read_table(emb_dir, columns=["text", "emb"])
    emb = from_fixed_list(table.column("emb"))
    assert emb.shape == (300, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # the job tokenizes in CPU tasks and hands the actor ids: the vectors are those of the model on the text
    assert "_tokens" not in table.column_names
    own = Embedder(resolve_model("minilm"), device="cpu").encode(table.column("text").to_pylist()[:20])
    assert np.abs(emb[:20] - own).max() < 1e-5
    # topical structure survives: documents of one topic mostly share a cluster
    t = pq.read_table(Path(spec.output.path) / "data", columns=["topic", "d_cluster"]).to_pylist()
    by_topic: dict[str, list[int]] = {}
    for r in t:
        by_topic.setdefault(r["topic"], []).append(r["d_cluster"])
    purity = np.mean([np.bincount(c).max() / len(c) for c in by_topic.values() if len(c) >= 5])
    assert purity > 0.6, by_topic
    assert 60 < m["counts"]["selected_copies"] < 140


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_fp16_embedding_and_faiss_kmeans():
    import torch

    from thresher.operators.kmeans import KMeans, gpu_available

    gpu = Embedder(resolve_model("minilm"), device="cuda")
    cpu = Embedder(resolve_model("minilm"), device="cpu")
    assert next(gpu._model.parameters()).dtype == torch.float16
    texts = ["the telescope found a comet", "bake the bread in the oven", "the court heard the appeal"]
    sims = (gpu.encode(texts) * cpu.encode(texts)).sum(axis=1)
    assert sims.min() > 0.99
    bf16 = Embedder(resolve_model("minilm"), device="cuda", precision="bf16")
    assert next(bf16._model.parameters()).dtype == torch.bfloat16
    assert (bf16.encode(texts) * cpu.encode(texts)).sum(axis=1).min() > 0.98
    if gpu_available():
        x = np.random.default_rng(0).standard_normal((5000, 64)).astype(np.float32)
        km = KMeans(8, use_gpu=True).fit(x)
        assert km.centroids_.shape == (8, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA")
def test_gpu_job_two_actors_share_a_gpu(local_ray, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 400)
    spec = make_spec(corpus, tmp_path / "out", embedder={"model": "minilm", "device": "cuda", "actors": 2, "gpus_per_actor": 0.5, "precision": "bf16"},
                     clustering={"n_clusters": 4}, selection={"budget": {"unit": "docs", "amount": 100}})
    m = run(spec, log=lambda m: None, progress=False)
    assert m["accounting_holds"] and m["timings"]["embed"]["device"] == "cuda"
    emb_dir = Path(spec.output.path).with_suffix(".work") / f"embed-{keys_for(spec)['embed']}" / "data"
    table = pq.read_table(emb_dir, columns=["text", "emb"])
    own = Embedder(resolve_model("minilm"), device="cpu").encode(table.column("text").to_pylist()[:50])
    assert (from_fixed_list(table.column("emb"))[:50] * own).sum(axis=1).min() > 0.98


def test_cpu_actors_that_would_starve_reading_are_refused(local_ray, tmp_path):
    from thresher.pipeline.errors import JobError

    corpus = write_corpus(tmp_path / "corpus", 20)
    spec = make_spec(corpus, tmp_path / "out", embedder={"actors": 2, "cpus_per_actor": 1, "device": "cpu"})
    with pytest.raises(JobError, match="= 2 CPUs leaves 0 of the cluster's 2, and reading needs 1 free CPU"):
        run(spec, log=lambda m: None, progress=False)
    assert not (tmp_path / "out").exists()
    fraction = make_spec(corpus, tmp_path / "out", embedder={"actors": 1, "cpus_per_actor": 1.5, "device": "cpu"})
    with pytest.raises(JobError, match="= 1.5 CPUs leaves 0.5 of the cluster's 2"):
        run(fraction, log=lambda m: None, progress=False)

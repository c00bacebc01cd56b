"""Language ID in a job: computed while embedding, used as a filter and as the domain."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from thresher.demo_corpus import generate
from thresher.pipeline.runner import run

from .helpers import make_spec

GERMAN = [
    "Der kleine Hund lief schnell über die Wiese, weil er den Ball seines Freundes gesehen hatte und ihn unbedingt fangen wollte.",
    "Im Herbst fallen die Blätter von den Bäumen, und die Tage werden kürzer, während die Menschen wärmere Kleidung tragen.",
    "Die Bibliothek der Stadt bleibt am Wochenende geschlossen, aber unter der Woche kann man dort bis zum späten Abend lesen.",
]
FRENCH = [
    "Le petit chat dort tranquillement sur le canapé pendant que la pluie tombe doucement contre les fenêtres de la maison.",
    "Nous avons visité le marché du village ce matin et acheté des fromages, du pain frais et quelques fruits de saison.",
]


def test_lang_filters_and_domains(local_ray, tmp_path):
    rows = generate(200, seed=8).select(["id", "text"]).to_pylist()
    foreign = [{"id": f"de-{i}", "text": t} for i, t in enumerate(GERMAN * 4)] + [{"id": f"fr-{i}", "text": t} for i, t in enumerate(FRENCH * 4)]
    (tmp_path / "in").mkdir()
    pq.write_table(pa.Table.from_pylist(rows + foreign), tmp_path / "in" / "mixed.parquet")
    # the copies repeat texts under new ids: only the lang columns matter here
    spec = make_spec(tmp_path / "in", tmp_path / "out", scorers={"lang": {}},
                     selection={"filters": [{"column": "lang", "values": ["en"]}], "budget": {"unit": "docs", "amount": 50}})
    m = run(spec, log=lambda m: None, progress=False)
    why = "filter: lang not in ['en']"
    rejected = pq.read_table(tmp_path / "out" / "rejected", columns=["doc_id", "reason"]).to_pylist()
    reasons = {r["doc_id"]: r["reason"] for r in rejected}
    assert all(reasons[r["id"]] == why for r in foreign)  # every German and French document, and
    assert m["counts"]["not_selected_by_reason"][why] < len(foreign) + 0.1 * len(rows)  # few of the (English, partly gibberish) demo ones
    data = pq.read_table(tmp_path / "out" / "data", columns=["lang", "q_lang_score"])
    assert set(data.column("lang").to_pylist()) == {"en"} and min(data.column("q_lang_score").to_pylist()) > 0.5
    by_lang = make_spec(tmp_path / "in", tmp_path / "by-lang", scorers={"lang": {}}, output={"work_dir": str(tmp_path / "out.work")},
                        selection={"domain": "lang", "filters": [], "budget": {"unit": "docs", "amount": 60}})
    m2 = run(by_lang, log=lambda m: None, progress=False)
    assert {"en", "de", "fr"} <= set(m2["domains"]) and m2["phases"]["embed"]["reused"]
    assert m2["domains"]["de"]["before"]["docs"] == len(GERMAN) * 4

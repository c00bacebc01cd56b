"""Language identification: known sentences, empty text, the batch columns and their nulls."""

import numpy as np
import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.langid import MAX_CHARS, _identifier, identify, lang_batch

SENTENCES = {
    "en": "The committee will meet again next week to discuss the budget for the new library and the repairs to the old school building.",
    "de": "Die Stadtverwaltung hat beschlossen, im nächsten Frühjahr neue Fahrradwege entlang des Flusses zu bauen, weil immer mehr Menschen mit dem Rad zur Arbeit fahren.",
    "fr": "Le conseil municipal a décidé de rénover la bibliothèque du quartier, qui accueillera dès l'automne prochain des ateliers pour les enfants et leurs parents.",
    "es": "El ayuntamiento anunció ayer que las obras de la nueva estación de tren empezarán en primavera y durarán aproximadamente dos años.",
    "it": "Il museo della città resterà chiuso per tutto il mese di agosto perché devono essere sostituiti gli impianti di illuminazione delle sale principali.",
    "pt": "A prefeitura informou que as inscrições para os cursos gratuitos de informática estarão abertas até o final do mês, e as vagas são limitadas.",
    "nl": "De gemeente heeft besloten om volgend jaar een nieuwe brug over het kanaal te bouwen, zodat fietsers niet meer zo lang hoeven te wachten.",
    "pl": "Władze miasta zapowiedziały, że w przyszłym roku zostanie otwarta nowa linia tramwajowa łącząca dworzec z osiedlami na północy.",
    "tr": "Belediye, gelecek yıl şehir merkezinde yeni bir kütüphane ve çocuklar için büyük bir park inşa edeceğini açıkladı.",
    "ru": "Городская администрация сообщила, что ремонт центральной библиотеки будет завершён к началу нового учебного года.",
    "el": "Ο δήμος ανακοίνωσε ότι οι εργασίες για τη νέα δημοτική βιβλιοθήκη θα ξεκινήσουν την επόμενη άνοιξη.",
    "ar": "أعلنت البلدية أن أعمال بناء المكتبة العامة الجديدة ستبدأ في الربيع المقبل وستستغرق نحو عامين.",
    "ja": "市は来年の春から駅前の広場を改修し、子どもたちが安全に遊べる公園を整備する計画を発表しました。",
    "zh": "市政府宣布，明年春天将开始改造火车站前的广场，并修建一个让孩子们可以安全玩耍的公园。",
}


def test_known_sentences():
    langs, scores = identify(list(SENTENCES.values()))
    assert langs == list(SENTENCES)
    assert scores.dtype == np.float32
    assert np.all((scores > 0.5) & (scores <= 1.0))


def test_empty_and_whitespace_text():
    langs, scores = identify(["", "  \n\t", "\u3000\u00a0"])
    assert langs == ["", "", ""]
    assert scores.tolist() == [0.0, 0.0, 0.0]
    langs, scores = identify([])
    assert langs == [] and scores.shape == (0,)


def test_varieties_merge_into_the_iso_639_1_code():
    # The model splits Arabic into ar / ary / arz: the score is their summed probability.
    text = SENTENCES["ar"]
    ranked = dict(_identifier().rank(text))
    _, scores = identify([text])
    assert scores[0] == pytest.approx(ranked["ar"] + ranked["ary"] + ranked["arz"], abs=1e-6)
    assert scores[0] > ranked["ar"]


def test_only_the_prefix_is_read():
    english = (SENTENCES["en"] + " ") * (MAX_CHARS // len(SENTENCES["en"]) + 1)
    text = english + (SENTENCES["de"] + " ") * 60
    assert identify([text])[0] == ["en"]
    assert identify([text], max_chars=None)[0] == ["de"]


def test_lang_batch_columns_types_and_nulls():
    batch = pa.table(
        {
            S.DOC_ID: ["a", "b", "c", "d", "e"],
            S.TEXT: [SENTENCES["en"], "", None, SENTENCES["de"], "  "],
            S.INVALID_REASON: [None, None, "null text", "text over max_bytes", None],
        }
    )
    out = lang_batch(batch)
    assert out.column_names == [S.DOC_ID, S.TEXT, S.INVALID_REASON, S.LANG, S.Q_LANG_SCORE]
    assert out.schema.field(S.LANG).type == pa.string()
    assert out.schema.field(S.Q_LANG_SCORE).type == pa.float32()
    assert out.column(S.LANG).to_pylist() == ["en", "", None, None, ""]
    scores = out.column(S.Q_LANG_SCORE).to_pylist()
    assert scores[0] > 0.5 and scores[1:] == [0.0, None, None, 0.0]


def test_lang_batch_other_text_column_without_invalid_reason():
    out = lang_batch(pa.table({"body": [SENTENCES["fr"], None]}), text_column="body")
    assert out.column(S.LANG).to_pylist() == ["fr", None]
    assert out.column(S.Q_LANG_SCORE).is_null().to_pylist() == [False, True]
    empty = lang_batch(pa.table({S.TEXT: pa.array([], pa.string())}))
    assert empty.num_rows == 0
    assert empty.schema.field(S.LANG).type == pa.string() and empty.schema.field(S.Q_LANG_SCORE).type == pa.float32()


def test_deterministic_and_independent_of_batch_order():
    texts = list(SENTENCES.values()) + ["ok", "12345 678", ""]
    langs, scores = identify(texts)
    again, again_scores = identify(texts)
    backwards, backwards_scores = identify(texts[::-1])
    assert again == langs and np.array_equal(again_scores, scores)
    assert backwards[::-1] == langs and np.array_equal(backwards_scores[::-1], scores)

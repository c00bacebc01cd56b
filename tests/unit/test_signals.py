import pyarrow as pa
import pytest

from thresher.operators import schema as S
from thresher.operators.signals import add_signals


def test_signals_hand_computed():
    # 13 words; 38 non-space characters; '#' and '...' are symbols; lines: 3, one repeated;
    # 11 words hold a letter; stop words: The, and, the (x2) = 6; 7 distinct lower-cased words.
    text = "The cat and the dog.\nThe cat and the dog.\n# hi ..."
    row = add_signals(pa.table({S.TEXT: [text]})).to_pylist()[0]
    assert row[S.SIG_N_CHARS] == 50
    assert row[S.SIG_N_WORDS] == 13
    assert row[S.SIG_MEAN_WORD_LEN] == pytest.approx(38 / 13)
    assert row[S.SIG_SYMBOL_RATIO] == pytest.approx(2 / 13)
    assert row[S.SIG_DUP_LINE_FRAC] == pytest.approx(1 / 3)
    assert row[S.SIG_ALPHA_RATIO] == pytest.approx(11 / 13)
    assert row[S.SIG_N_STOPWORDS] == 6
    assert row[S.SIG_STOPWORD_RATIO] == pytest.approx(6 / 13)
    assert row[S.SIG_UNIQUE_WORD_FRAC] == pytest.approx(7 / 13)


def test_signals_null_and_empty():
    rows = add_signals(pa.table({S.TEXT: pa.array([None, "", "…"], pa.string())})).to_pylist()
    assert rows[0][S.SIG_N_WORDS] is None
    assert rows[1][S.SIG_N_WORDS] == 0 and rows[1][S.SIG_DUP_LINE_FRAC] == 0.0
    assert rows[2][S.SIG_SYMBOL_RATIO] == 1.0 and rows[2][S.SIG_ALPHA_RATIO] == 0.0


def test_signals_unicode_whitespace_and_letters_inside_words():
    # Words split on any Unicode whitespace (no-break space, ideographic space, tab):
    # "été", "12b", "3.5", "中文", "..x", "42" -> 6 words, 3+3+3+2+3+2 = 16 non-space characters;
    # a word holds a letter anywhere in it: été, 12b, 中文, ..x -> 4 of 6.
    text = "été\u00a012b\t3.5\u3000中文 ..x  42"
    row = add_signals(pa.table({S.TEXT: [text]})).to_pylist()[0]
    assert row[S.SIG_N_WORDS] == 6
    assert row[S.SIG_MEAN_WORD_LEN] == pytest.approx(16 / 6)
    assert row[S.SIG_ALPHA_RATIO] == pytest.approx(4 / 6)

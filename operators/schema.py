"""Every column thresher writes, named once.

Families: identity (`doc_id`, `text`), `sig_*` heuristic signals, `emb`
embedding, `q_*` quality, `d_*` diversity, `domain`, `sel_*` selection.
Passthrough metadata from the input keeps its own names.
"""

DOC_ID = "doc_id"
TEXT = "text"
N_TOKENS = "n_tokens"
INVALID_REASON = "invalid_reason"

SIG_N_CHARS = "sig_n_chars"
SIG_N_WORDS = "sig_n_words"
SIG_MEAN_WORD_LEN = "sig_mean_word_len"
SIG_SYMBOL_RATIO = "sig_symbol_ratio"
SIG_DUP_LINE_FRAC = "sig_dup_line_frac"
SIG_ALPHA_RATIO = "sig_alpha_ratio"
SIG_N_STOPWORDS = "sig_n_stopwords"
SIG_STOPWORD_RATIO = "sig_stopword_ratio"
SIG_UNIQUE_WORD_FRAC = "sig_unique_word_frac"

EMB = "emb"

Q_HEURISTIC = "q_heuristic"

D_CLUSTER = "d_cluster"
D_CENTROID_DIST = "d_centroid_dist"

DOMAIN = "domain"

SEL_VALUE = "sel_value"
SEL_COPIES = "sel_copies"
SEL_PERCENTILE = "sel_percentile"
SEL_STRATEGY = "sel_strategy"
SEL_REASON = "sel_reason"

"""Every column thresher writes, named once.

Families: identity (`doc_id`, `text`), `sig_*` heuristic signals, `emb`
embedding, `q_*` quality, `d_*` diversity, `domain`, `sel_*` selection.
Passthrough metadata from the input keeps its own names.
"""

DOC_ID = "doc_id"
TEXT = "text"
N_TOKENS = "n_tokens"
INVALID_REASON = "invalid_reason"
# Where a row came from: the input file, and the row number in it (Parquet) or
# the byte offset of its line in the (decompressed) file (JSONL).
INPUT_FILE = "input_file"
INPUT_OFFSET = "input_offset"

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

LANG = "lang"  # ISO 639-1 code of the document's language (operators/langid.py)
Q_LANG_SCORE = "q_lang_score"  # the language ID's probability for it

D_CLUSTER = "d_cluster"
D_CENTROID_DIST = "d_centroid_dist"

DOMAIN = "domain"

SEL_VALUE = "sel_value"
SEL_COPIES = "sel_copies"
SEL_PERCENTILE = "sel_percentile"
SEL_STRATEGY = "sel_strategy"
SEL_REASON = "sel_reason"
PICK_SCORE = "pick_score"  # in a subset strategy's groups: the score its keys_and_scores gave the document (pipeline/picks.py)

# Heuristic rule families: the reason a document fails the family, null when it passes.
Q_RULE_GOPHER_QUALITY = "q_rule_gopher_quality"
Q_RULE_GOPHER_REPETITION = "q_rule_gopher_repetition"
Q_RULE_C4 = "q_rule_c4"
Q_RULE_FINEWEB = "q_rule_fineweb"
# The value each rule tests, appended by `apply_rules(..., signals=True)`.
SIG_GOPHER_N_WORDS = "sig_gopher_n_words"
SIG_GOPHER_MEAN_WORD_LEN = "sig_gopher_mean_word_len"
SIG_GOPHER_HASH_RATIO = "sig_gopher_hash_ratio"
SIG_GOPHER_ELLIPSIS_RATIO = "sig_gopher_ellipsis_ratio"
SIG_GOPHER_BULLET_LINE_FRAC = "sig_gopher_bullet_line_frac"
SIG_GOPHER_ELLIPSIS_LINE_FRAC = "sig_gopher_ellipsis_line_frac"
SIG_GOPHER_ALPHA_WORD_FRAC = "sig_gopher_alpha_word_frac"
SIG_GOPHER_N_STOP_WORDS = "sig_gopher_n_stop_words"
SIG_GOPHER_DUP_PARA_FRAC = "sig_gopher_dup_para_frac"
SIG_GOPHER_DUP_PARA_CHAR_FRAC = "sig_gopher_dup_para_char_frac"
SIG_GOPHER_DUP_LINE_FRAC = "sig_gopher_dup_line_frac"
SIG_GOPHER_DUP_LINE_CHAR_FRAC = "sig_gopher_dup_line_char_frac"
SIG_GOPHER_TOP_NGRAM_CHAR_FRAC = "sig_gopher_top_ngram_char_frac"
SIG_GOPHER_DUP_NGRAM_CHAR_FRAC = "sig_gopher_dup_ngram_char_frac"
SIG_C4_N_SENTENCES = "sig_c4_n_sentences"
SIG_C4_KEPT_CHAR_FRAC = "sig_c4_kept_char_frac"
SIG_FINEWEB_LINE_PUNCT_FRAC = "sig_fineweb_line_punct_frac"
SIG_FINEWEB_SHORT_LINE_FRAC = "sig_fineweb_short_line_frac"
SIG_FINEWEB_DUP_LINE_CHAR_FRAC = "sig_fineweb_dup_line_char_frac"
SIG_FINEWEB_NEWLINE_WORD_RATIO = "sig_fineweb_newline_word_ratio"

Q_CLASSIFIER = "q_classifier"

U_DSIR = "u_dsir"
Q_DSIR = "q_dsir"  # u_dsir's percentile in the pool sample: the DSIR weight as a quality score
U_TARGET_SIM = "u_target_sim"
U_UDS = "u_uds"  # UDS utility: nuclear norm of a proxy LM's logits per token (operators/uds.py)
Q_UDS = "q_uds"  # u_uds's percentile in the pool sample
U_ALLSH = "u_allsh"  # ALLSH local sensitivity: a proxy LM's largest output divergence under perturbations (operators/allsh.py)
Q_ALLSH = "q_allsh"  # u_allsh's percentile in the pool sample

D_CLUSTER_SIZE = "d_cluster_size"
D_CLUSTER_RARITY = "d_cluster_rarity"
D_SEMDUP = "d_semdup"
D_SEMDUP_OF = "d_semdup_of"
D_EXACT_DUP = "d_exact_dup"
D_EXACT_DUP_OF = "d_exact_dup_of"
D_NEAR_DUP = "d_near_dup"
D_NEAR_DUP_OF = "d_near_dup_of"

"""Deterministic synthetic demo corpus with planted defects.

Why this exists: the curation pipeline (dedup, quality scoring, topic
clustering) needs a small, reproducible input whose ground truth is known, so
that ``thresher demo-corpus``, ``make demo``, tests and benchmarks can check
that each stage finds what was planted.  Every row says how it was made
(``planted``), which topical domain it came from (``topic``) and, for
duplicates, which clean row it copies (``dup_of``).

Text is composed from per-topic vocabularies and sentence templates written
for this module (no files are read), so the output depends only on
``(n_docs, seed)``, NumPy's PCG64 and CPython's Mersenne Twister, and is
identical on every machine.
"""

from __future__ import annotations

import json
import math
import os
import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PLANTED_KINDS", "LOW_QUALITY_KINDS", "generate", "write"]

PLANTED_KINDS = ("clean", "exact_dup", "near_dup", "boilerplate", "keyword_spam", "gibberish")
LOW_QUALITY_KINDS = ("boilerplate", "keyword_spam", "gibberish")

# Target share of each non-clean kind; "clean" takes the remainder (~78%).
_FRACTIONS = {
    "exact_dup": 0.05,
    "near_dup": 0.05,
    "boilerplate": 0.04,
    "keyword_spam": 0.04,
    "gibberish": 0.04,
}

# Clean-document length in words: log-normal, clipped.  Median ~170 words,
# mean ~280, roughly 1-2% of documents beyond 1500 words.
_LEN_MEDIAN = 170.0
_LEN_SIGMA = 1.0
_LEN_MIN = 20
_LEN_MAX = 3000
# Near-duplicates are made from originals at least this long, so that a few
# small edits keep word 5-gram Jaccard similarity high.
_NEAR_DUP_MIN_WORDS = 200
_NEAR_DUP_MIN_JACCARD = 0.75

_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("topic", pa.string()),
        ("planted", pa.string()),
        ("dup_of", pa.string()),
    ]
)

# --------------------------------------------------------------------------
# Vocabularies.  Each topic has its own nouns, adjectives, verbs (base form)
# and agents (plural people), so embeddings separate the topics; the small
# shared word lists below only provide the connective tissue of English.
# Entries are whitespace-separated; '_' joins a multi-word entry.
# --------------------------------------------------------------------------

_TOPICS: dict[str, dict] = {
    "astronomy": {
        "nouns": """telescope galaxy nebula comet asteroid planet moon orbit star_cluster supernova black_hole
            spectrum redshift eclipse meteor_shower solar_wind magnetosphere exoplanet observatory
            constellation light_curve accretion_disk pulsar quasar white_dwarf red_giant gravitational_lens
            cosmic_ray dust_cloud planetary_ring lunar_crater solar_flare radio_signal star_chart parallax
            horizon zenith binary_star brown_dwarf protostar spiral_arm orbital_period photometer eyepiece
            asteroid_belt Kuiper_belt_object space_probe""",
        "adjs": """distant faint luminous orbital celestial stellar galactic lunar solar interstellar cosmic
            massive dim rotating elliptical infrared ultraviolet spectral gravitational ancient frozen dense
            remote planetary""",
        "verbs": """observe measure detect track photograph map estimate calibrate resolve chart survey catalog
            monitor model image locate classify record""",
        "agents": """astronomers astrophysicists amateur_observers planetary_scientists cosmologists
            telescope_operators stargazers mission_engineers""",
        "templates": [
            "On a clear night, {ag} can {vb} the {n} with a modest telescope.",
            "Light from the {n} travels for thousands of years before it reaches the Earth.",
            "The {n} lies far beyond the orbit of Neptune, where the {n2} is faint and cold.",
            "Spectra of the {n} show that the {n2} contains hydrogen, helium and traces of heavier elements.",
            "During the last eclipse, {ag} used the {n} to {vb} the {a} {n2}.",
            "Seen from a dark site, the {n} stretches across the sky like a pale band of light.",
        ],
    },
    "cooking": {
        "nouns": """skillet saucepan dough broth marinade sauce onion garlic_clove roast casserole oven stockpot
            pastry crust batter butter olive_oil vinaigrette braise risotto noodle dumpling spice_blend herb
            fillet stew glaze custard loaf recipe kitchen_knife cutting_board caramel lentil tomato mushroom
            shallot cream yeast flour roux pan_sauce seasoning dessert soup salad griddle baking_sheet
            pie_dish""",
        "adjs": """crispy tender savory golden creamy fragrant smoky tangy rustic hearty delicate buttery spicy
            sweet roasted fresh homemade caramelized juicy flaky aromatic silky zesty""",
        "verbs": """simmer roast season whisk knead chop braise marinate bake taste stir fold reduce grill slice
            blend garnish strain toast poach glaze""",
        "agents": """cooks home_cooks chefs bakers pastry_chefs food_writers line_cooks kitchen_staff""",
        "templates": [
            "Season the {n} with salt and pepper before you {vb} the {n2}.",
            "Let the {n} rest for ten minutes so that the {n2} can settle.",
            "A splash of lemon juice brightens the {n} and balances the {a} {n2}.",
            "Most {ag} prefer to {vb} the {n} over low heat until it turns {a}.",
            "Keep the {n} covered in the refrigerator and use it within three days.",
            "Serve the {n} warm, with the {n2} on the side and plenty of fresh bread.",
        ],
    },
    "finance": {
        "nouns": """portfolio dividend bond stock equity interest_rate inflation index_fund mortgage pension asset
            liability balance_sheet cash_flow earnings_report yield credit_rating derivative currency
            exchange_rate budget savings_account loan tax_bill retirement_plan market_index share_price
            valuation capital_gain brokerage risk_premium treasury_bill annuity debt revenue profit_margin
            recession central_bank bank_deposit fiscal_policy trading_volume investment_fund""",
        "adjs": """volatile diversified fiscal monetary profitable liquid quarterly annual risky conservative
            speculative taxable leveraged inflationary stable long-term short-term financial corporate global
            cautious undervalued""",
        "verbs": """invest hedge diversify allocate borrow lend rebalance forecast audit finance refinance
            purchase sell value trade evaluate insure save fund price""",
        "agents": """investors analysts economists fund_managers accountants traders lenders financial_advisers""",
        "templates": [
            "Investors who {vb} the {n} during a downturn often regret the decision later.",
            "The central bank raised the interest rate by a quarter of a percentage point, "
            "and the {n} responded within hours.",
            "Over a period of twenty years, the {n} has returned about {pct} percent after inflation.",
            "Before you {vb} the {n}, compare the fees charged by several providers.",
            "Quarterly results showed that the {n} grew faster than the {n2}.",
            "A {a} {n} can protect savings when the {n2} is under pressure.",
        ],
    },
    "medicine": {
        "nouns": """symptom diagnosis vaccine antibiotic infection blood_pressure heart_rate immune_system
            clinical_trial dosage prescription surgery tumor inflammation artery kidney liver lung fracture
            therapy side_effect chronic_illness blood_test hospital_ward physical_exam treatment_plan
            medication virus bacterium allergy insulin cholesterol scan biopsy recovery pain_reliever
            bone_density nervous_system vital_sign enzyme antibody ligament wound emergency_room""",
        "adjs": """clinical chronic acute medical surgical diagnostic therapeutic cardiac respiratory
            inflammatory infectious preventive elevated mild severe healthy viral bacterial genetic painful
            routine intravenous""",
        "verbs": """diagnose treat prescribe examine vaccinate screen manage prevent relieve assess administer
            evaluate adjust repair investigate""",
        "agents": """doctors nurses physicians surgeons pharmacists clinicians medical_researchers paramedics""",
        "templates": [
            "Patients should speak with their doctor before they {vb} the {n}.",
            "The clinical trial enrolled several hundred patients and followed the {n} for twelve months.",
            "In most cases the {n} improves within a week, although the {n2} may take longer to settle.",
            "{ag} recommend a {a} {n} for anyone over the age of fifty.",
            "An early diagnosis makes it much easier to {vb} the {n} before the {n2} spreads.",
            "The hospital changed its guidelines after the {n} was linked to the {a} {n2}.",
        ],
    },
    "programming": {
        "nouns": """function variable compiler interpreter database query server request response module
            library framework algorithm data_structure array hash_table pointer thread process memory_leak
            exception stack_trace unit_test repository branch commit pull_request deployment container
            configuration_file endpoint cache loop recursion parser type_system garbage_collector
            syntax_error build_script dependency package_manager debugger log_file source_code command_line
            runtime""",
        "adjs": """asynchronous recursive immutable concurrent compiled dynamic static typed modular scalable
            efficient deprecated open-source distributed lightweight verbose readable robust experimental
            generic nested parallel""",
        "verbs": """compile debug refactor deploy profile optimize parse serialize validate document implement
            rewrite benchmark configure install import merge inspect""",
        "agents": """developers programmers software_engineers maintainers testers contributors
            system_administrators code_reviewers""",
        "templates": [
            "The function returns the {n} only after the {n2} has been validated.",
            "If the test suite fails, {ag} {adv} {vb} the {n} before they merge the branch.",
            "Version two of the library replaced the {a} {n} with a simpler {n2}.",
            "A single misplaced bracket in the {n} can break the entire {n2}.",
            "Most {ag} write a small script to {vb} the {n} on every commit.",
            "The documentation explains how to {vb} the {n} from the command line.",
        ],
    },
    "sports": {
        "nouns": """match tournament league goalkeeper striker midfielder referee season playoff championship
            stadium training_session penalty_kick free_throw scoreboard jersey defense offense tactic
            formation substitute injury fitness_test sprint marathon relay serve racket pitch field court
            locker_room transfer_window contract fan_base rivalry halftime overtime assist rebound lineup
            draft_pick trophy home_crowd""",
        "adjs": """athletic competitive defensive offensive tactical physical professional amateur decisive
            unbeaten dominant injured talented young veteran aggressive disciplined crowded thrilling narrow
            final""",
        "verbs": """train coach defend attack score pass tackle celebrate recruit scout draft practice sponsor
            win watch replay""",
        "agents": """players coaches athletes referees fans team_managers sports_journalists talent_scouts""",
        "templates": [
            "In the final minutes of the match, the {n} made all the difference.",
            "{ag} {adv} {vb} the {n} during the off season.",
            "The home side won the {n} by two points after a {a} second half.",
            "After the injury, the captain spent six weeks away from the {n}.",
            "Fans packed the stadium to watch the {a} {n} against their oldest rivals.",
            "The league changed the rules on the {n} after a long and heated debate.",
        ],
    },
    "law": {
        "nouns": """contract statute lawsuit plaintiff defendant verdict appeal testimony evidence jury settlement
            injunction regulation clause precedent liability trademark patent copyright lease tenancy
            property_deed will estate trust warrant subpoena hearing motion brief ruling constitution
            amendment legislation legal_fee damages_claim arbitration deposition bail_hearing criminal_charge
            civil_dispute privacy_law license_agreement jurisdiction""",
        "adjs": """legal judicial binding statutory constitutional contractual criminal civil federal municipal
            enforceable procedural confidential lawful unlawful appellate formal written disputed pending
            regulatory fiduciary""",
        "verbs": """interpret enforce draft sign challenge litigate negotiate file dismiss overturn uphold amend
            cite contest settle regulate witness notarize prosecute""",
        "agents": """lawyers judges attorneys legislators paralegals jurors prosecutors legal_scholars""",
        "templates": [
            "Under the statute, the {n} must be filed within thirty days of the {n2}.",
            "The court held that the {n} did not {vb} the {n2}.",
            "{ag} {adv} advise clients to read the {n} carefully before they sign it.",
            "On appeal, the judges found that the {a} {n} had been applied incorrectly.",
            "The parties reached a settlement before the {n} went to trial.",
            "A written {n} is usually easier to {vb} than an oral agreement.",
        ],
    },
    "gardening": {
        "nouns": """seedling compost mulch soil trowel perennial flower_bed vegetable_patch greenhouse rose_bush
            hedge lawn root_system fertilizer watering_can pruning_shears raised_bed seed_packet herb_garden
            fruit_tree bulb shrub weed earthworm leaf_mold potting_mix drip_line trellis vine cutting
            pollinator aphid slug garden_path orchard cold_frame hanging_basket clay_pot rain_barrel topsoil
            groundcover blossom""",
        "adjs": """fertile sandy shady sunny drought-tolerant hardy flowering evergreen deciduous organic leafy
            thorny climbing dormant ornamental well-drained overgrown blooming native moist potted""",
        "verbs": """plant prune water weed mulch fertilize transplant harvest sow propagate repot dig rake trim
            divide graft irrigate stake cultivate""",
        "agents": """gardeners growers horticulturists landscapers allotment_holders nursery_owners
            beekeepers market_gardeners""",
        "templates": [
            "Water the {n} early in the morning so the {n2} can dry before evening.",
            "In late autumn, {ag} {adv} {vb} the {n} and cover the {n2} with mulch.",
            "A {a} {n} needs at least six hours of direct sunlight each day.",
            "Slugs and aphids can ruin the {n} within a week if nobody checks the {n2}.",
            "Add a layer of compost to the {n} every spring to keep the soil {a}.",
            "Many {ag} {vb} the {n} in small pots before moving it outside.",
        ],
    },
}

_ADVERBS = """often usually carefully rarely sometimes typically gradually quickly deliberately occasionally
    routinely seldom""".split()
_GENERIC_ADJS = """important common difficult useful unusual significant complex simple reliable expensive familiar
    subtle essential practical""".split()
_CONNECTIVES = [
    "However,", "In practice,", "For this reason,", "As a result,", "In many cases,", "At the same time,",
    "By contrast,", "For example,", "In general,", "Over time,", "Not surprisingly,", "Even so,",
    "In recent years,", "Historically,", "On the other hand,", "In the end,",
]

_GENERIC_TEMPLATES = [
    "The {a} {n} {v} the {n2}.",
    "{conn} the {n} {v} the {a} {n2} in most cases.",
    "{ag} {adv} {vb} the {n} when the {n2} becomes {a}.",
    "Most {ag} agree that the {n} {v} the {n2} more than the {n3} does.",
    "It is {ga} to {vb} the {n} before the {n2} {v} the {n3}.",
    "{art} {a} {n} can {vb} the {n2}, but only if the {n3} is {a2}.",
    "When {ag} {vb} {art} {a} {n}, they {adv} {vb2} the {n2} as well.",
    "There are many ways to {vb} the {n}, and each of them {v} the {n2} in a different way.",
    "{conn} {ag} tend to {vb} the {n} rather than the {n2}.",
    "The relationship between the {n} and the {n2} is {a} and often {ga}.",
    "One {ga} example is the {n} that {v} the {n2} of {art} {a} {n3}.",
    "Questions about the {n} {adv} lead {ag} to {vb} the {n2} again.",
    "This is one reason why the {n} matters so much to {ag}.",
    "Without the {n}, the {n2} would be far less {a}.",
    "{ag} who {vb} the {n} {adv} report that the {n2} becomes more {ga}.",
    "The {n} was once described as {art} {a} {n2}, although that view has changed over time.",
    "Each {n} {v} the {n2} in its own way, which makes the {n3} surprisingly {a}.",
    "For many {ag}, the {a} {n} is the most {ga} part of the {n2}.",
    "If the {n} is {a}, the {n2} {v} the {n3}, and the {n4} {v2} the {n5}.",
    "A recent survey of {num} {ag} found that most of them {vb} the {n} at least once a week.",
    "In about {pct} percent of cases, the {n} {v} the {n2} without any outside help.",
    "{conn} the {n} and the {n2} {vb} the {n3} together.",
    "Nobody expected the {n} to {vb} the {n2} so quickly.",
    "The {a} {n} and the {a2} {n2} are easy to confuse, yet they {vb} the {n3} in very different ways.",
    "Experienced {ag} know that the {n} {v} the {n2} only when conditions are right.",
    "The history of the {n} is closely tied to the {n2} and the {n3}.",
    "It would be a mistake to {vb} the {n} without first checking the {n2}.",
    "{ag} {adv} ask whether the {n} really {v} the {n2}, and the answer depends on the {n3}.",
    "As the {n} grows more {a}, the {n2} {v} the {n3} with greater effect.",
    "Good {ag} {vb} the {n} first and then {vb2} the {n2}.",
    "The {n} is not always {a}, but it is almost always {ga}.",
    "{conn} {ag} have learned to {vb} the {n} with {art} {a} {n2}.",
    "What makes the {n} {ga} is the way it {v} the {n2}.",
    "Some {ag} {vb} the {n} by hand, while others prefer to {vb2} the {n2} with {art} {a} {n3}.",
    "The effect of the {n} on the {n2} is {a}, and {ag} {adv} {vb} it with care.",
    "Since the {n} {v} the {n2}, {ag} must also {vb} the {n3}.",
    "Few {ag} realize how much the {n} depends on the {n2}.",
    "{conn} the {a} {n} remains one of the most {ga} topics for {ag}.",
]

_TITLE_TEMPLATES = [
    "A guide to the {a} {n}",
    "Understanding the {n}",
    "How {ag} {vb} the {n}",
    "The {a} {n}: what {ag} should know",
    "Why the {n} matters",
    "Notes on the {n} and the {n2}",
    "Ten questions about the {a} {n}",
]

_SPAM_MODIFIERS = """best cheap buy top free discount deals sale online now review guide official premium
    new""".split()

_BOILERPLATE_LINES = [
    "Skip to main content", "Home", "About Us", "Contact", "Log In", "Sign Up", "Search", "Menu",
    "We use cookies to improve your experience on our site. "
    "By continuing to browse, you agree to our use of cookies.",
    "Accept All Cookies", "Manage Preferences", "Reject Non-Essential Cookies",
    "Share on Facebook", "Share on Twitter", "Share by Email", "Print this page", "Related Posts",
    "Subscribe to our newsletter", "Enter your email address", "Subscribe", "Back to top",
    "Privacy Policy | Terms of Use | Cookie Policy | Sitemap", "Advertise With Us", "Careers", "Help Center",
    "This site is protected by reCAPTCHA and the Google Privacy Policy and Terms of Service apply.",
    "Loading...", "Read more", "Next page", "Previous page", "Follow us", "Leave a comment",
]

_SITE_SUFFIXES = ["Weekly", "Journal", "Hub", "Daily", "Online", "Review", "Network", "Insider"]


def _vocab_list(spec: str) -> list[str]:
    """Whitespace-separated entries; '_' joins the words of a multi-word entry."""
    return list(dict.fromkeys(w.replace("_", " ") for w in spec.split()))


def _third_person(verb: str) -> str:
    """Regular English 3rd-person singular: 'watch' -> 'watches', 'study' -> 'studies'."""
    if verb.endswith(("s", "x", "z", "ch", "sh")):
        return verb + "es"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


_SLOT_RE = re.compile(r"\{(\w+)\}")
# slot name (without trailing digit) -> vocabulary category
_SLOT_CATEGORY = {"n": "nouns", "a": "adjs", "v": "verbs3", "vb": "verbs", "ag": "agents",
                  "adv": "adv", "ga": "gadj", "conn": "conn", "num": "num", "pct": "pct", "art": "art"}


def _compile_template(template: str) -> list[tuple[str | None, str]]:
    """Template -> [(category or None, slot-name-or-literal)] so filling is a cheap loop."""
    parts: list[tuple[str | None, str]] = []
    pos = 0
    for m in _SLOT_RE.finditer(template):
        if m.start() > pos:
            parts.append((None, template[pos:m.start()]))
        name = m.group(1)
        parts.append((_SLOT_CATEGORY[name.rstrip("0123456789")], name))
        pos = m.end()
    if pos < len(template):
        parts.append((None, template[pos:]))
    return parts


class _Topic:
    """Compiled vocabulary and templates for one topical domain."""

    def __init__(self, name: str, spec: dict) -> None:
        self.name = name
        verbs = _vocab_list(spec["verbs"])
        self.cats: dict[str, list[str]] = {
            "nouns": _vocab_list(spec["nouns"]),
            "adjs": _vocab_list(spec["adjs"]),
            "verbs": verbs,
            "verbs3": [_third_person(v) for v in verbs],
            "agents": _vocab_list(spec["agents"]),
            "adv": _ADVERBS,
            "gadj": _GENERIC_ADJS,
            "conn": _CONNECTIVES,
        }
        self.own_templates = [_compile_template(t) for t in spec["templates"]]
        self.single_words = [w for w in self.cats["nouns"] + self.cats["adjs"] if " " not in w]


_GENERIC_COMPILED = [_compile_template(t) for t in _GENERIC_TEMPLATES]
_TITLE_COMPILED = [_compile_template(t) for t in _TITLE_TEMPLATES]
_TOPIC_LIST = [_Topic(name, spec) for name, spec in _TOPICS.items()]
_TOPIC_NAMES = tuple(t.name for t in _TOPIC_LIST)


# --------------------------------------------------------------------------
# Text builders.  Each takes a seeded random.Random (fast scalar draws) that
# is itself seeded from the NumPy generator in generate().
# --------------------------------------------------------------------------


def _fill(parts: list[tuple[str | None, str]], topic: _Topic, r: random.Random) -> str:
    """Fill one compiled template; distinct slot names get distinct words."""
    chosen: dict[str, str] = {}
    used: set[str] = set()
    out: list[str] = []
    article_at = -1
    cats = topic.cats
    for cat, name in parts:
        if cat is None:
            out.append(name)
            continue
        if cat == "art":
            article_at = len(out)
            out.append("a")
            continue
        word = chosen.get(name)
        if word is None:
            if cat == "num":
                word = str(r.randint(12, 950))
            elif cat == "pct":
                word = str(r.randint(5, 95))
            else:
                pool = cats[cat]
                word = pool[int(r.random() * len(pool))]
                for _ in range(3):
                    if word not in used:
                        break
                    word = pool[int(r.random() * len(pool))]
                used.add(word)
            chosen[name] = word
        if article_at >= 0:
            if word[0] in "aeiouAEIOU":
                out[article_at] = "an"
            article_at = -1
        out.append(word)
    s = "".join(out)
    return s[0].upper() + s[1:]


def _sentence(topic: _Topic, r: random.Random) -> str:
    """One sentence: mostly generic structure, sometimes a topic-specific one."""
    if r.random() < 0.25:
        parts = topic.own_templates[int(r.random() * len(topic.own_templates))]
    else:
        parts = _GENERIC_COMPILED[int(r.random() * len(_GENERIC_COMPILED))]
    return _fill(parts, topic, r)


def _clean_doc(topic: _Topic, target_words: int, r: random.Random) -> str:
    """Multi-paragraph prose of roughly target_words words; no sentence repeats."""
    paragraphs: list[str] = []
    seen: set[str] = set()
    total = 0
    if target_words >= 80 and r.random() < 0.4:
        title = _fill(_TITLE_COMPILED[int(r.random() * len(_TITLE_COMPILED))], topic, r)
        paragraphs.append(title[0].upper() + title[1:])
        total += title.count(" ") + 1
    while total < target_words:
        n_sent = r.randint(2, 8)
        para: list[str] = []
        tries = 0
        while len(para) < n_sent and total < target_words and tries < 50:
            tries += 1
            s = _sentence(topic, r)
            if s in seen:
                continue
            seen.add(s)
            para.append(s)
            total += s.count(" ") + 1
        if para:
            paragraphs.append(" ".join(para))
    return "\n\n".join(paragraphs)


def _boilerplate_doc(topic: _Topic, r: random.Random) -> str:
    """Page furniture: menus, cookie banners, share buttons, copyright lines, repeated."""
    noun = r.choice(topic.cats["nouns"])
    site = f"{noun.title()} {r.choice(_SITE_SUFFIXES)}"
    categories = [w.title() for w in r.sample(topic.cats["nouns"], 5)]
    menu = ["Home"] + categories + ["About Us", "Contact"]
    footer = [
        "Privacy Policy | Terms of Use | Cookie Policy | Sitemap",
        f"© {r.randint(2012, 2024)} {site}. All rights reserved.",
        "Back to top",
    ]
    # Navigation appears in the header and again in the footer, as on real pages.
    lines: list[str] = [f"{site} - Home", "Skip to main content"] + menu
    for _ in range(r.randint(2, 5)):
        block = r.randint(0, 3)
        if block == 0:
            lines += menu
        elif block == 1:
            lines += [_BOILERPLATE_LINES[8], "Accept All Cookies", "Manage Preferences"]
        elif block == 2:
            lines += r.sample(_BOILERPLATE_LINES, r.randint(4, 9))
        else:
            lines += ["Share on Facebook", "Share on Twitter", "Share by Email", "Related Posts"]
            lines += [f"{c} {r.choice(['Tips', 'News', 'Guide', 'Basics'])}" for c in r.sample(categories, 3)]
    lines += menu + ["Subscribe to our newsletter", "Enter your email address", "Subscribe"] + footer
    return "\n".join(lines)


def _keyword_spam_doc(topic: _Topic, r: random.Random) -> str:
    """A handful of topic keywords and sales words repeated many times."""
    keywords = r.sample(topic.cats["nouns"], r.randint(2, 4))
    mods = r.sample(_SPAM_MODIFIERS, r.randint(2, 4))
    phrases = keywords + [f"{m} {k}" for m in mods for k in keywords] + [f"{k} {r.choice(mods)}" for k in keywords]
    n_phrases = r.randint(25, 160)
    out: list[str] = []
    for i in range(n_phrases):
        out.append(r.choice(phrases))
        sep = r.random()
        if i == n_phrases - 1:
            break
        out.append(", " if sep < 0.15 else (" | " if sep < 0.22 else ("\n" if sep < 0.27 else " ")))
    return "".join(out)


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_SYMBOLS = "#$%&*@!~^|<>{}[]()+=/\\_;:?"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_MOJIBAKE = ["Ã©", "â€™", "Ã¤", "Â»", "ï¿½", "Ã¶", "â€œ", "Ã±", "Â¦", "Ã¼"]


def _gibberish_doc(r: random.Random) -> str:
    """Non-language: random letter strings, symbol soup, encoded blobs or mojibake."""
    style = r.randint(0, 3)
    n_tokens = r.randint(20, 600)
    if style == 0:  # random lowercase "words"
        toks = ["".join(r.choices(_LOWER, k=r.randint(3, 12))) for _ in range(n_tokens)]
        return " ".join(toks)
    if style == 1:  # symbol-heavy soup
        alphabet = _SYMBOLS * 3 + _LOWER + "0123456789"
        toks = ["".join(r.choices(alphabet, k=r.randint(2, 14))) for _ in range(n_tokens)]
        return " ".join(toks)
    if style == 2:  # base64-like blob broken into lines
        blob = "".join(r.choices(_B64, k=n_tokens * 8))
        return "\n".join(blob[i:i + 76] for i in range(0, len(blob), 76))
    toks = []  # mojibake mixed with letter and digit runs
    for _ in range(n_tokens):
        core = "".join(r.choices(_LOWER + "0123456789", k=r.randint(1, 6)))
        toks.append(r.choice(_MOJIBAKE) + core + r.choice(_MOJIBAKE))
    return " ".join(toks)


_WORD_RE = re.compile(r"\w+")


def _shingles(text: str, k: int = 5) -> set[tuple[str, ...]]:
    """Word k-grams used to verify near-duplicates stay near."""
    w = _WORD_RE.findall(text.lower())
    return {tuple(w[i:i + k]) for i in range(max(len(w) - k + 1, 1))}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / max(len(sa | sb), 1)


def _edit_tokens(text: str, topic: _Topic, r: random.Random, n_subs: int, swap: bool) -> str:
    """Substitute n_subs words and optionally swap two neighbouring words, keeping layout."""
    tokens = re.split(r"( +|\n+)", text)  # keep separators at odd indices
    word_idx = [i for i in range(0, len(tokens), 2) if tokens[i].isalpha() and len(tokens[i]) > 3]
    if not word_idx:
        return text
    for i in r.sample(word_idx, min(n_subs, len(word_idx))):
        new = r.choice(topic.single_words)
        if tokens[i][0].isupper():
            new = new[0].upper() + new[1:]
        tokens[i] = new
    if swap and len(word_idx) > 2:
        i = r.choice(word_idx)
        j = i + 2
        if j < len(tokens) and tokens[i + 1] == " " and tokens[j].isalpha() and tokens[i].islower() \
                and tokens[j].islower():
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


def _whitespace_edit(text: str, r: random.Random) -> str:
    """A layout-only change (never alters the word sequence)."""
    k = r.randint(0, 3)
    if k == 0:
        return text.replace("\n\n", "\n\n\n", 1) if "\n\n" in text else text + "\n"
    if k == 1:
        return text + "  \n"
    if k == 2:
        spaces = [m.start() for m in re.finditer(" ", text)]
        if spaces:
            p = r.choice(spaces)
            return text[:p] + "  " + text[p + 1:]
        return " " + text
    return "\n" + text.replace(". ", ".  ", 1)


def _near_dup(text: str, topic: _Topic, r: random.Random) -> str:
    """Lightly edited copy: swapped/changed words, a dropped or added sentence, whitespace."""
    n_words = text.count(" ") + text.count("\n") + 1
    candidate = text
    if r.random() < 0.5:
        # Drop one sentence from a paragraph that has several.
        paras = text.split("\n\n")
        multi = [i for i, p in enumerate(paras) if p.count(". ") >= 2]
        if multi:
            i = r.choice(multi)
            sents = re.split(r"(?<=\.) ", paras[i])
            del sents[r.randrange(len(sents))]
            paras[i] = " ".join(sents)
            candidate = "\n\n".join(paras)
    else:
        candidate = candidate + " " + _sentence(topic, r)
    edited = _edit_tokens(candidate, topic, r, n_subs=1 + min(n_words // 300, 4), swap=r.random() < 0.6)
    edited = _whitespace_edit(edited, r)
    if edited != text and _jaccard(text, edited) >= _NEAR_DUP_MIN_JACCARD:
        return edited
    # Too short for that many edits: one substitution plus layout.
    edited = _whitespace_edit(_edit_tokens(text, topic, r, n_subs=1, swap=False), r)
    if edited != text and _jaccard(text, edited) >= _NEAR_DUP_MIN_JACCARD:
        return edited
    # Tiny original: a layout-only change still makes it a non-identical copy.
    edited = _whitespace_edit(text, r)
    return edited if edited != text else text + "\n"


# --------------------------------------------------------------------------
# Assembly.
# --------------------------------------------------------------------------


def _composition(n_docs: int) -> dict[str, int]:
    """Row count per planted kind; rounded half-up, clean takes the remainder."""
    counts = {k: int(math.floor(f * n_docs + 0.5)) for k, f in _FRACTIONS.items()}
    counts = {"clean": n_docs - sum(counts.values()), **counts}
    return counts


def _separate_dups(order: np.ndarray, orig: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Swap rows so no duplicate sits right next to its original (best effort for tiny corpora)."""
    n = len(order)
    if n < 4:
        return order
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    dup_rows = np.flatnonzero(orig >= 0)

    def bad(row: int) -> bool:
        o = orig[row]
        if o >= 0 and abs(pos[row] - pos[o]) <= 1:
            return True
        # Also a clean row next to one of its own copies.
        p = pos[row]
        for q in (p - 1, p + 1):
            if 0 <= q < n and orig[order[q]] == row:
                return True
        return False

    for _ in range(20):
        moved = False
        for row in dup_rows:
            if not bad(row):
                continue
            for _ in range(10):
                j = int(rng.integers(n))
                other = order[j]
                pi = pos[row]
                order[pi], order[j] = other, row
                pos[row], pos[other] = j, pi
                if not bad(row) and not bad(other):
                    break
            moved = True
        if not moved:
            break
    return order


def generate(n_docs: int = 4000, seed: int = 0) -> pa.Table:
    """Build the demo corpus in memory.

    Returns a table of exactly ``n_docs`` rows (columns id, text, topic,
    planted, dup_of) with ~78% clean prose in several topics and planted
    exact/near duplicates and low-quality pages, shuffled deterministically.
    Same ``(n_docs, seed)`` always gives an identical table.
    """
    if n_docs < 0:
        raise ValueError(f"n_docs must be >= 0, got {n_docs}")
    rng = np.random.default_rng(seed)
    counts = _composition(n_docs)
    n_clean = counts["clean"]
    n_topics = len(_TOPIC_LIST)

    def child() -> random.Random:
        return random.Random(int(rng.integers(0, 2**63 - 1)))

    # Clean documents: topic, length and a private RNG stream per document.
    topic_idx = rng.integers(0, n_topics, size=n_clean)
    lengths = np.exp(rng.normal(math.log(_LEN_MEDIAN), _LEN_SIGMA, size=n_clean))
    lengths = np.clip(np.rint(lengths), _LEN_MIN, _LEN_MAX).astype(np.int64)
    if n_clean >= 20:  # guarantee the extremes are present
        lengths[0], lengths[1] = _LEN_MIN, _LEN_MAX
    doc_seeds = rng.integers(0, 2**63 - 1, size=n_clean).tolist()
    texts: list[str] = []
    topics: list[str] = []
    planted: list[str] = []
    orig: list[int] = []
    for t, length, s in zip(topic_idx.tolist(), lengths.tolist(), doc_seeds):
        texts.append(_clean_doc(_TOPIC_LIST[t], length, random.Random(s)))
        topics.append(_TOPIC_LIST[t].name)
        planted.append("clean")
        orig.append(-1)

    # Exact duplicates: byte-identical copies of random clean documents.
    if counts["exact_dup"] and n_clean:
        src = rng.choice(n_clean, size=counts["exact_dup"], replace=counts["exact_dup"] > n_clean)
        for i in src.tolist():
            texts.append(texts[i])
            topics.append(topics[i])
            planted.append("exact_dup")
            orig.append(i)

    # Near duplicates: edited copies of sufficiently long clean documents.
    if counts["near_dup"] and n_clean:
        word_counts = np.array([len(t.split()) for t in texts[:n_clean]])
        pool = np.flatnonzero(word_counts >= _NEAR_DUP_MIN_WORDS)
        if len(pool) < counts["near_dup"]:
            pool = np.argsort(-word_counts, kind="stable")[: max(counts["near_dup"], 1)]
        src = rng.choice(pool, size=counts["near_dup"], replace=counts["near_dup"] > len(pool))
        r = child()
        for i in src.tolist():
            topic = _TOPIC_LIST[int(topic_idx[i])]
            texts.append(_near_dup(texts[i], topic, r))
            topics.append(topics[i])
            planted.append("near_dup")
            orig.append(i)

    # Low-quality pages.
    r = child()
    for _ in range(counts["boilerplate"]):
        topic = _TOPIC_LIST[r.randrange(n_topics)]
        texts.append(_boilerplate_doc(topic, r))
        topics.append(topic.name)
        planted.append("boilerplate")
        orig.append(-1)
    r = child()
    for _ in range(counts["keyword_spam"]):
        topic = _TOPIC_LIST[r.randrange(n_topics)]
        texts.append(_keyword_spam_doc(topic, r))
        topics.append(topic.name)
        planted.append("keyword_spam")
        orig.append(-1)
    r = child()
    for _ in range(counts["gibberish"]):
        texts.append(_gibberish_doc(r))
        topics.append("none")
        planted.append("gibberish")
        orig.append(-1)

    # Deterministic shuffle; ids follow final row order.
    orig_arr = np.asarray(orig, dtype=np.int64)
    order = _separate_dups(rng.permutation(n_docs), orig_arr, rng)
    width = max(6, len(str(max(n_docs - 1, 0))))
    ids_by_row = np.empty(n_docs, dtype=object)
    for new_pos, row in enumerate(order.tolist()):
        ids_by_row[row] = f"demo-{new_pos:0{width}d}"
    rows = order.tolist()
    columns = {
        "id": [ids_by_row[i] for i in rows],
        "text": [texts[i] for i in rows],
        "topic": [topics[i] for i in rows],
        "planted": [planted[i] for i in rows],
        "dup_of": [ids_by_row[orig[i]] if orig[i] >= 0 else None for i in rows],
    }
    return pa.table(columns, schema=_SCHEMA)


ROW_GROUP_ROWS = 10_000


def write(path: str, n_docs: int = 4000, seed: int = 0, fmt: str = "parquet") -> str:
    """Generate the corpus and write it to one file at ``path``; returns ``path``.

    ``fmt`` is "parquet" (zstd-compressed) or "jsonl" (one UTF-8 JSON object
    per line), so the CLI and Makefile can feed either reader.  Parquet row
    groups hold ROW_GROUP_ROWS documents, as a corpus writer would: a reader
    decompresses a whole row group at once, so one huge group would make a
    job's memory grow with the corpus.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', got {fmt!r}")
    table = generate(n_docs=n_docs, seed=seed)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    else:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, ensure_ascii=False))
                f.write("\n")
    return path

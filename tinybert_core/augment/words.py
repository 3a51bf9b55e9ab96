"""Words of a text as TinyBERT's augmentation sees them: where they are, which may be replaced, and how.

A *word* is a maximal run of word characters (`\\w+`, so letters, digits and `_`), found by position in
the original string. Splitting this way, rather than `text.split(" ")` as the reference does, keeps
punctuation out of words ("film," gives "film") and lets a replacement splice into the original text,
so everything that is not a replaced word (spacing, punctuation, case) survives unchanged. It agrees
with BERT's basic tokenizer on alphabetic words, which split on whitespace and punctuation too
("long-term" is two words, "doesn't" is "doesn" and "t", both stopwords).

A word is a *candidate* for replacement when it is alphabetic and not an English stopword.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# NLTK's English stopword list, held here to avoid an nltk dependency. The TinyBERT reference copies it
# without the wh-words (what, which, who, whom, when, where, why, how); keeping them spares question words.
# Entries with apostrophes never match a `\w+` word; they are kept so the list stays recognisably NLTK's.
STOPWORDS: frozenset[str] = frozenset(
    """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
    he him his himself she she's her hers herself it it's its itself they them their theirs themselves
    what which who whom this that that'll these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more most other
    some such no nor not only own same so than too very s t can will just don don't should should've
    now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
    hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
    shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
    """.split()
)

_WORD = re.compile(r"\w+")


class Word(NamedTuple):
    """One word of a text: the characters `text[start:end]` of the string it was found in."""

    text: str
    start: int
    end: int


def split_words(text: str) -> list[Word]:
    """All words of `text` in order, with their character spans."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def is_candidate_word(word: str) -> bool:
    """Whether augmentation may replace `word`: alphabetic and not a stopword (case-insensitive)."""
    return word.isalpha() and word.lower() not in STOPWORDS


def match_case(candidate: str, word: str) -> str:
    """`candidate` written in the case pattern of `word` (ALL CAPS or Capitalised), since both candidate
    sources are usually uncased; lower-case words leave the candidate as its source spelled it."""
    if len(word) > 1 and word.isupper():
        return candidate.upper()
    if word[:1].isupper():
        return candidate[:1].upper() + candidate[1:]
    return candidate


def replace_words(text: str, replacements: dict[Word, str]) -> str:
    """`text` with each given word's span replaced by its new string; all other characters kept."""
    pieces: list[str] = []
    position = 0
    for word in sorted(replacements, key=lambda w: w.start):
        pieces.append(text[position : word.start])
        pieces.append(replacements[word])
        position = word.end
    pieces.append(text[position:])
    return "".join(pieces)

"""A movie-review corpus generated from a small probabilistic grammar written for this project.

Every review starts with a sentiment-neutral opening of at least four words, so the
first words make a prompt whose continuation decides the sentiment; the body mixes
positive, negative and mixed sentences. The vocabulary leans on words the VADER lexicon
rates (the gold scorer), plus a few it does not rate, so a reward model trained on gold
labels has something it cannot learn from them. Generation is seeded and deterministic:
the same ``(n, seed)`` gives the same list on every machine.
"""

from __future__ import annotations

import random

SENTIMENTS = ("positive", "negative", "mixed")

FILMS = ["this movie", "this film", "the movie", "the film", "this picture", "this story"]
WHEN = [
    "last night",
    "on friday",
    "with my family",
    "at the cinema",
    "on a rainy sunday",
    "yesterday",
    "with a friend",
    "after work",
]
ASPECTS = [
    "acting",
    "plot",
    "script",
    "music",
    "ending",
    "dialogue",
    "cast",
    "direction",
    "camera work",
    "pacing",
    "story",
    "soundtrack",
    "lead actor",
    "lead actress",
    "humor",
    "villain",
]
# Aspects the gold lexicon rates stay out of the opener, whose first words form the prompt.
OPENER_ASPECTS = [a for a in ASPECTS if a not in ("humor", "villain")]
PEOPLE = ["the lead actor", "the young actress", "the villain", "the director", "the whole cast"]
INTENSIFIERS = ["", "", "really ", "very ", "truly ", "quite ", "so ", "extremely ", "pretty "]
ADJ = {
    "positive": [
        "great",
        "wonderful",
        "brilliant",
        "excellent",
        "amazing",
        "beautiful",
        "charming",
        "delightful",
        "superb",
        "fantastic",
        "funny",
        "clever",
        "lovely",
        "powerful",
        "fun",
        "perfect",
        "impressive",
        "enjoyable",
        "gorgeous",
        "thrilling",
        "inspiring",
        "sweet",
        "memorable",
        "gripping",
    ],
    "negative": [
        "boring",
        "awful",
        "terrible",
        "dull",
        "weak",
        "bad",
        "poor",
        "horrible",
        "stupid",
        "ugly",
        "painful",
        "lame",
        "annoying",
        "disappointing",
        "messy",
        "dreadful",
        "ridiculous",
        "miserable",
        "pathetic",
        "tedious",
        "bland",
        "forgettable",
    ],
}
VERBS = {
    "positive": ["loved", "enjoyed", "adored", "liked", "admired"],
    "negative": ["hated", "disliked", "despised", "regretted"],
}
CLOSERS = {
    "positive": [
        "I would recommend it to everyone.",
        "I will watch it again.",
        "A must see.",
        "Ten out of ten.",
        "Go and see it.",
        "It made my week.",
        "What a great evening.",
    ],
    "negative": [
        "Do not waste your time.",
        "I want my money back.",
        "I would not recommend it.",
        "Skip this one.",
        "Two out of ten.",
        "What a waste of an evening.",
        "I almost fell asleep.",
    ],
}


def _flip(sentiment: str) -> str:
    return "negative" if sentiment == "positive" else "positive"


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _opener(rng: random.Random, s: str) -> str:
    """First sentence; its first four words never carry sentiment."""
    film, adj = rng.choice(FILMS), rng.choice(ADJ[s])
    intens, aspect = rng.choice(INTENSIFIERS), rng.choice(OPENER_ASPECTS)
    choices = [
        f"I watched {film} {rng.choice(WHEN)} and it was {intens}{adj}.",
        f"I have to say that {film} was {intens}{adj}.",
        f"The {aspect} in {film} was {intens}{adj}.",
        f"I went to see {film} {rng.choice(WHEN)} and {rng.choice(VERBS[s])} it.",
        f"From the first scene, {film} felt {intens}{adj}.",
        f"After ten minutes I knew this was a {intens}{adj} film.",
        f"My brother told me that {film} was {intens}{adj}.",
        f"We rented {film} {rng.choice(WHEN)} and it was {intens}{adj}.",
        f"Watching {film} {rng.choice(WHEN)} was {intens}{adj}.",
        f"When it comes to the {aspect}, {film} is {intens}{adj}.",
    ]
    return rng.choice(choices)


def _body(rng: random.Random, s: str) -> str:
    aspect, other = rng.sample(ASPECTS, 2)
    intens, adj = rng.choice(INTENSIFIERS), rng.choice(ADJ[s])
    choices = [
        f"The {aspect} was {intens}{adj}.",
        f"{_cap(rng.choice(PEOPLE))} gave a {intens}{adj} performance.",
        f"I found the {aspect} {intens}{adj}.",
        f"Even the {aspect} was {adj}.",
        f"The {aspect} was not {rng.choice(ADJ[_flip(s)])} at all.",
        f"I {rng.choice(VERBS[s])} the {aspect} and the {other}.",
        f"The {aspect} and the {other} were both {intens}{adj}.",
    ]
    return rng.choice(choices)


def _mixed(rng: random.Random, s: str) -> str:
    aspect, other = rng.sample(ASPECTS, 2)
    good, bad = rng.choice(ADJ[s]), rng.choice(ADJ[_flip(s)])
    return f"The {aspect} was {rng.choice(INTENSIFIERS)}{good}, but the {other} was {bad}."


def sample_review(rng: random.Random) -> tuple[str, str]:
    """One review and its intended sentiment (``positive``, ``negative`` or ``mixed``)."""
    sentiment = rng.choices(SENTIMENTS, weights=(0.36, 0.46, 0.18))[0]
    lead = rng.choice(("positive", "negative")) if sentiment == "mixed" else sentiment
    parts = [_opener(rng, lead)]
    for _ in range(rng.choice((0, 1, 1, 2))):
        parts.append(_mixed(rng, lead) if sentiment == "mixed" else _body(rng, lead))
    if rng.random() < 0.5:
        end = _flip(lead) if sentiment == "mixed" else lead
        parts.append(rng.choice(CLOSERS[end]))
    return " ".join(parts), sentiment


def build_corpus(n: int, seed: int = 0, distinct: bool = True) -> list[str]:
    """``n`` reviews from the grammar, deterministic in ``seed``; distinct unless told otherwise."""
    if n < 1:
        raise ValueError(f"build_corpus: n must be >= 1, got {n}")
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"build_corpus: the grammar cannot give {n} distinct reviews")
        text, _ = sample_review(rng)
        if distinct and text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out


def extract_prompt(text: str, n_words: int = 4) -> str:
    """The first ``n_words`` words of a review, the prompt a policy continues."""
    if n_words < 1:
        raise ValueError(f"extract_prompt: n_words must be >= 1, got {n_words}")
    return " ".join(text.split()[:n_words])


def sentiment_prompts(n: int, seed: int = 1, n_words: int = 4) -> list[str]:
    """``n`` prompts (review openings); pass a seed other than the SFT corpus seed for held-out ones."""
    return [extract_prompt(t, n_words) for t in build_corpus(n, seed=seed, distinct=False)]

"""The gold scorer: VADER's compound sentiment score, playing the role of the human.

VADER (vaderSentiment) ships its lexicon inside its wheel, so it works offline. Nobody in
this project wrote it, which is the point: the reward model learns to imitate it from
preference pairs, and PPO optimises the reward model, while the gold scorer itself is only
used to label pairs and to evaluate. The compound score lies in [-1, 1].
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def score_gold(texts: list[str]) -> list[float]:
    """VADER compound score of each text, in [-1, 1]."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(t)["compound"]) for t in texts]


def gold_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """Reward callable ``(prompts, completions) -> scores``: the gold score of prompt + completion."""
    if len(prompts) != len(completions):
        raise ValueError(f"gold_reward: {len(prompts)} prompts but {len(completions)} completions")
    return score_gold([p + c for p, c in zip(prompts, completions)])


def fraction_positive(scores: list[float], threshold: float = 0.05) -> float:
    """Share of scores VADER calls positive (compound >= 0.05, its documented convention)."""
    return sum(s >= threshold for s in scores) / max(1, len(scores))

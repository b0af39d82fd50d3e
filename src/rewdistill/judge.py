"""LLM-as-judge pseudo-labels (the paper's later version, for open-ended tasks): the teacher grades responses.

The teacher, through any backend, reads a rubric prompt with the question and one response and ends its
judgement with `Score: N` (1-10). `parse_score` reads it robustly; an unparsable judgement is counted and its
response dropped (never guessed). A response is labelled 1 when its score reaches `judge_threshold`.
"""
from __future__ import annotations

import re

RUBRIC_MARK = "You are a strict grader."
RUBRIC = (RUBRIC_MARK + " Judge whether the response answers the question correctly. Check its reasoning and its "
          "final answer. Reply with a short justification, then a final line \"Score: N\" where N is an integer "
          "from 1 (wrong) to 10 (certainly correct).\n\n[Question]\n{question}\n\n[Response]\n{response}\n\n"
          "[Your judgement]")
_PATTERNS = [
    re.compile(r"score\s*[:=]\s*\**\s*\[*(\d+(?:\.\d+)?)\s*\]*\s*(?:/\s*10)?", re.IGNORECASE),
    re.compile(r"rating\s*[:=]\s*\**\s*\[*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"\[\[(\d+(?:\.\d+)?)\]\]"),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b"),
]


def judge_prompt(question: str, response: str) -> str:
    return RUBRIC.format(question=question.strip(), response=response.strip())


def parse_score(text: str, lo: float = 1, hi: float = 10) -> float | None:
    """The judge's score: the last `Score: N` (or `Rating: N`, `[[N]]`, `N/10`) within [lo, hi]; else None.

    >>> parse_score("Good steps.\\nScore: 8")
    8.0
    >>> parse_score("**Score:** [[3]]/10"), parse_score("I would say 7/10."), parse_score("Looks right.")
    (3.0, 7.0, None)
    """
    for pat in _PATTERNS:
        found = [float(x) for x in pat.findall(text)]
        found = [x for x in found if lo <= x <= hi]
        if found:
            return found[-1]
    return None


def judge_rows(sampler, prompts: dict[str, str], rows: list[dict], max_new_tokens: int, seed: int,
               desc: str | None = None) -> list[float | None]:
    """The judge's score (or None) of each row {qid, text}, greedy, one judgement per response."""
    judge_prompts = [judge_prompt(prompts[r["qid"]], r["text"]) for r in rows]
    gens = sampler.generate(judge_prompts, 0.0, 1, max_new_tokens, seed=seed, desc=desc)
    return [parse_score(g.text) for g in gens]

"""Answer extraction and normalisation for real benchmarks, as pure functions.

GSM8K follows lm-evaluation-harness: `strict` takes the number after `#### `; `flexible` takes the
last number in the text. Both strip `,` and `$` and a trailing `.`, then compare numerically
(`18`, `18.0` and `18.00` are one answer). MMLU-Pro follows the official evaluation's cascade:
`answer is (X)`, then `Answer: X`, then the last standalone letter, using only letters that exist.
"""
from __future__ import annotations

import re
import string
from decimal import Decimal, InvalidOperation

LETTERS = "ABCDEFGHIJ"
_STRICT_RE = re.compile(r"#### (\-?[0-9\.\,]+)")  # lm-eval gsm8k strict-match
_FLEXIBLE_RE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # lm-eval gsm8k flexible-extract


def normalize_number(s: str) -> str | None:
    """'1,000' -> '1000', '$18.00' -> '18', '-3.50.' -> '-3.5'; None when it is not a number."""
    s = s.strip().replace(",", "").replace("$", "").rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    if not d.is_finite():
        return None
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def extract_number(text: str, mode: str = "auto") -> str | None:
    """The final numeric answer of a response: strict (`#### N`), flexible (last number) or auto (strict, else
    flexible)."""
    if mode in ("strict", "auto"):
        m = _STRICT_RE.search(text)
        if m:
            return normalize_number(m.group(1))
        if mode == "strict":
            return None
    for groups in reversed(_FLEXIBLE_RE.findall(text)):
        num = normalize_number(groups[0] or groups[1])
        if num is not None:
            return num
    return None


def extract_letter(text: str, n_options: int) -> str | None:
    """The official MMLU-Pro cascade, over the first `n_options` letters only; None when nothing parses."""
    if n_options < 1:
        return None
    valid = f"A-{LETTERS[n_options - 1]}"
    m = re.search(rf"answer is \(?([{valid}])\)?", text)
    if m:
        return m.group(1)
    m = re.search(rf".*[aA]nswer:\s*\(?([{valid}])\)?", text)
    if m:
        return m.group(1)
    m = re.search(rf"\b[{valid}]\b(?!.*\b[{valid}]\b)", text, re.DOTALL)
    return m.group(0) if m else None


def normalize_text(s: str) -> str:
    """Lower case, no surrounding punctuation, single spaces: the exact-match form of a short text answer."""
    s = " ".join(s.lower().split())
    return s.strip(string.punctuation + " ")


def extract_text(text: str) -> str | None:
    """The text after the last `Answer:`, else the last non-empty line; normalised; None when empty."""
    found = re.findall(r"[aA]nswer:\s*(.+)", text)
    if found:
        cand = found[-1]
    else:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        cand = lines[-1] if lines else ""
    cand = normalize_text(cand)
    return cand or None

"""Per-question agreement between two tools' outputs on the same questions.

Pure functions over two lists of per-question dicts, one per tool, each
    {"id": key, "lls": [log-likelihood per choice, None when missing], "pred": int,
     "gold": int, "prompt_sha256": hex digest of the prompt (context) text}
where `id` is whatever both tools can name a question by (MMLU: "subject/index"; MMLU-Pro: the
row index in test.jsonl, lm-eval's doc_id). Questions are matched by id; the prompts are then
checked to be the same text by their sha256.
"""

from __future__ import annotations

import hashlib
import math
import string

LETTERS = string.ascii_uppercase


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def argmax(lls) -> int:
    """First highest (numpy.argmax, as lm-eval's acc); None (missing) never wins."""
    best = -1
    for i, ll in enumerate(lls):
        if ll is not None and (best < 0 or ll > lls[best]):
            best = i
    return best


def _missing(ll) -> bool:
    # NaN compares false with everything: left in, it would never count as the largest
    # difference and a broken value would pass as agreement.
    return ll is None or (isinstance(ll, float) and math.isnan(ll))


def by_id(questions: list[dict]) -> dict:
    """id -> question, refusing a list that names a question twice."""
    out = {}
    for q in questions:
        if q["id"] in out:
            raise ValueError(f"question {q['id']!r} appears twice")
        out[q["id"]] = q
    return out


def _ll_diffs(common: list, a: dict, b: dict) -> tuple[float, str | None, int, int]:
    """(max |difference|, where, missing values, questions with different choice counts)."""
    worst, where, missing, uneven = 0.0, None, 0, 0
    for q in common:
        if len(a[q]["lls"]) != len(b[q]["lls"]):
            uneven += 1
            continue
        for i, (x, y) in enumerate(zip(a[q]["lls"], b[q]["lls"], strict=True)):
            if _missing(x) or _missing(y):
                missing += 1
                continue
            d = abs(x - y)
            if d > worst or where is None:
                worst, where = max(worst, d), f"{q} choice {LETTERS[i]}"
    return worst, where, missing, uneven


def compare(first: list[dict], second: list[dict]) -> dict:
    """How far two tools agree on the questions both answered (order: the first's)."""
    a, b = by_id(first), by_id(second)
    common = [q for q in a if q in b]
    worst, where, missing, uneven = _ll_diffs(common, a, b)
    agree = sum(a[q]["pred"] == b[q]["pred"] for q in common)
    return {"questions": len(common), "only_first": len(set(a) - set(b)),
            "only_second": len(set(b) - set(a)), "max_abs_ll_diff": worst,
            "max_at": where, "missing_lls": missing, "choice_counts_differ": uneven,
            "pred_agree": agree,
            "pred_agreement": agree / len(common) if common else None,
            "prompts_identical": sum(a[q]["prompt_sha256"] == b[q]["prompt_sha256"]
                                     for q in common),
            "gold_identical": sum(a[q]["gold"] == b[q]["gold"] for q in common)}


def within(cmp: dict, tolerance: float) -> bool:
    """Full agreement: the same questions on both sides (at least one), identical prompts and
    golds, the same prediction everywhere, every log-likelihood present on both sides and no
    two further apart than `tolerance`."""
    n = cmp["questions"]
    return (n > 0 and cmp["only_first"] == cmp["only_second"] == 0
            and cmp["prompts_identical"] == cmp["gold_identical"] == cmp["pred_agree"] == n
            and cmp["missing_lls"] == cmp["choice_counts_differ"] == 0
            and cmp["max_abs_ll_diff"] <= tolerance)


def degenerate(questions: list[dict]) -> str | None:
    """A warning when the log-likelihoods carry no information (all equal everywhere)."""
    flat = [q for q in questions if len(set(q["lls"])) <= 1]
    if questions and len(flat) == len(questions):
        values = sorted({str(v) for q in flat for v in q["lls"]})[:3]
        sizes = {len(q["lls"]) for q in flat}
        what = "four" if sizes == {4} else "choices'"
        return (f"every question's {what} log-likelihoods are equal ({', '.join(values)}): "
                "the predictions are all 'A' and the accuracy is meaningless")
    return None

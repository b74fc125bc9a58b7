"""What every generating backend shares: lm-eval's stop-string rule.

lm-eval (models/utils.py postprocess_generated_text) splits the decoded text at each stop
string in turn and keeps what comes before: the text up to the earliest occurrence of any
of them. Empty stop strings are ignored (a tokenizer whose end-of-text decodes to "").
"""

from __future__ import annotations

from collections.abc import Sequence


def stops_with_eos(until: Sequence[str], eos: str | None) -> tuple[str, ...]:
    """lm-eval's handle_stop_sequences: the format's stop strings plus the decoded EOS."""
    out = list(until)
    if eos and eos not in out:
        out.append(eos)
    return tuple(out)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(the text before the first stop string, whether one was found)."""
    cut = len(text)
    for stop in stops:
        if stop:
            at = text.find(stop)
            if 0 <= at < cut:
                cut = at
    return text[:cut], cut < len(text)

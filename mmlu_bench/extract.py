"""Answer extraction for generative MMLU formats, as lm-eval 0.4.13 and OpenAI simple-evals do it.

Pure functions, standard library only. Each extractor returns an `Extraction`:
  - `filtered`: byte for byte what the reference pipeline hands its metric (lm-eval's filtered
    string, "[invalid]" included; simple-evals' extracted answer, "" when none);
  - `letter`: the letter that string scores as, or None;
  - `reason`: why there is no letter (None when there is one).
A response is correct iff `letter == gold letter`. For lm-eval this equals its `exact_match`
(ignore_case + ignore_punctuation, the setting of every task here; Meta's llama recipes also
drop every "$" and a final "." first: regexes_to_ignore) against the task's target ("B", "(B)",
"B."): both sides are lower-cased and stripped of ASCII punctuation, so "**B**", "(B)", "B." and
"(b" all score as B. tests/fixtures/lmeval_filters.json pins this to lm-eval's own output.
"""

import functools
import re
import string
import sys
import unicodedata
from dataclasses import dataclass

INVALID = "[invalid]"  # lm-eval's RegexFilter fallback


@dataclass(frozen=True, slots=True)
class Extraction:
    letter: str | None
    filtered: str
    reason: str | None


_ASCII_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str, ignore_case: bool = True, ignore_punctuation: bool = True,
              regexes_to_ignore=()) -> str:
    """One side of lm-eval's exact_match (exact_match_hf_evaluate), in its order: each regex of
    regexes_to_ignore removed (re.sub, every match; "\\.$" also matches a "." before a final
    newline), then optional lower-casing, then optional removal of ASCII `string.punctuation`
    (not Unicode punctuation: "（B）" keeps its full-width brackets). Traps of the numpy arrays
    lm-eval holds the one pair in: an element read back loses its trailing NULs ("B\\x00"
    equals "B"), and numpy's lower case is cut to the array's width ("İ" lowers to "i", not
    str.lower's two-character "i̇")."""
    width = len(text)  # the array's itemsize: the string as it went in
    for pattern in regexes_to_ignore:
        text = re.sub(pattern, "", text.rstrip("\x00"))
        width = len(text)
    text = text.rstrip("\x00")
    if ignore_case:
        text = text.lower()[:width].rstrip("\x00")
    if ignore_punctuation:
        text = text.translate(_ASCII_PUNCT)
    return text.rstrip("\x00")


def exact_match(prediction: str, reference: str, ignore_case: bool = True,
                ignore_punctuation: bool = True, regexes_to_ignore=()) -> bool:
    """lm-eval's exact_match for one pair: both sides normalized alike, then compared."""
    options = (ignore_case, ignore_punctuation, tuple(regexes_to_ignore or ()))
    return normalize(prediction, *options) == normalize(reference, *options)


def _scored(filtered: str, empty: bool, regexes_to_ignore=()) -> Extraction:
    """The letter an lm-eval filtered string scores as under exact_match(ignore case+punct,
    regexes_to_ignore): the one letter whose target normalizes to what it normalizes to."""
    if empty:
        return Extraction(None, filtered, "empty response")
    if filtered == INVALID:
        return Extraction(None, filtered, "no match")
    norm = normalize(filtered, regexes_to_ignore=regexes_to_ignore)
    if len(norm) == 1 and norm in string.ascii_lowercase:
        return Extraction(norm.upper(), filtered, None)
    return Extraction(None, filtered, f"not a lone letter: {filtered[:40]!r}")


def _first_group(pattern: re.Pattern, text: str) -> str:
    """lm-eval RegexFilter with group_select=0: the first findall hit, stripped, or "[invalid]"."""
    m = pattern.search(text)
    return m.group(1).strip() if m else INVALID


def lmeval_mmlu_generative(response: str, choices=None) -> Extraction:
    """`mmlu_generative` filter `get_response`: the first line, whitespace-trimmed, is the answer.

    lm-eval's chain (regex `^(.*?)(?=\\n|$)`, remove_whitespace, regex `^(.*?)\\s*$`) keeps
    everything before the first "\\n" and strips it; there is no letter search, so "B. Mars"
    scores 0 while "**B**" scores B.
    """
    filtered = response.split("\n", 1)[0].strip()
    return _scored(filtered, empty=not filtered)


_REDUX = re.compile(r"([ABCD])")


def lmeval_mmlu_redux_generative(response: str, choices=None) -> Extraction:
    """`mmlu_redux_generative` filter `default`: the first capital A-D anywhere, case-sensitive.

    Trap: the "A" of "Answer: C" is that first capital, so "**Answer: C**" scores as A.
    """
    return _scored(_first_group(_REDUX, response), empty=not response.strip())


_MMLU_PRO = re.compile(r"answer is \(?([A-J])\)?")


def lmeval_mmlu_pro(response: str, choices=None) -> Extraction:
    """`mmlu_pro` filter `custom-extract`: the FIRST "answer is (X)" / "answer is X", case-
    sensitive (lower-case "the answer is (c)" fails), X in A-J whatever the option count."""
    return _scored(_first_group(_MMLU_PRO, response), empty=not response.strip())


# Meta's recipes (lm-eval 0.4.13 tasks/llama3/instruct): exact_match drops every "$" and a
# final "." from both sides first (mmlu_llama's target is "B.", the generation stops at ".").
LLAMA_REGEXES = (r"\$", r"\.$")


def lmeval_mmlu_llama(response: str, choices=None) -> Extraction:
    """`mmlu_llama` (and the multilingual mmlu_<lang>_llama) filter `strict_match`:
    remove_whitespace (strip) and take_first, so the whole continuation of "The best answer
    is" must be one letter: " B" scores B, "B is right" scores nothing, "**B**" and "$B$" B."""
    filtered = response.strip()
    return _scored(filtered, not filtered, LLAMA_REGEXES)


def _last_group(pattern: re.Pattern, text: str) -> str:
    """lm-eval RegexFilter with group_select=-1: the LAST findall hit, stripped, or invalid."""
    hits = pattern.findall(text)
    return hits[-1].strip() if hits else INVALID


_COT_LLAMA = re.compile(r"best answer is ([A-Z])")


def lmeval_mmlu_cot_llama(response: str, choices=None) -> Extraction:
    """`mmlu_cot_llama` filter `strict_match`: the LAST "best answer is X", X a capital A-Z,
    case-sensitive ("The best answer is b" fails; "(B)" fails: the letter must follow)."""
    return _scored(_last_group(_COT_LLAMA, response), not response.strip())


_PRO_LLAMA = re.compile(r"[tT]he best answer is ([A-Z])")


def lmeval_mmlu_pro_llama(response: str, choices=None) -> Extraction:
    """`mmlu_pro_llama` filter `strict_match`: the LAST "The best answer is X" (or "the"), X a
    capital A-Z; exact_match with Meta's regexes_to_ignore, which leave a letter as it is."""
    return _scored(_last_group(_PRO_LLAMA, response), not response.strip(), LLAMA_REGEXES)


_STRICT_PREFIX = re.compile(r"(?<=answer is )|(?<=The answer: )|(?<=The final answer: )")


def lmeval_flan_cot_strict(response: str, choices=None) -> Extraction:
    """`mmlu_flan_cot_zeroshot` filter `strict-match`.

    lm-eval's regex `(?<=The answer is )(.*)(?=.)|(?<=answer is )…|(?<=The answer: )…|(?<=The
    final answer: )…` captures, after the first such prefix whose line goes on, the rest of that
    line minus its last character ("(B)." -> "(B)", "(B)" -> "(B"). Only the first hit counts: a
    one-character rest ("answer is B" at a line end) captures "" and gives "[invalid]" even if a
    later line would match. Case-sensitive; "The answer is" is covered by "answer is".
    """
    for m in _STRICT_PREFIX.finditer(response):
        rest = response[m.end():].split("\n", 1)[0]
        if rest:  # `(.*)(?=.)` needs at least one character left on the line
            # lm-eval drops an empty capture before stripping: " " -> "", "" -> "[invalid]"
            return _scored(rest[:-1].strip() if rest[:-1] else INVALID, empty=False)
    return _scored(INVALID, empty=not response.strip())


@functools.cache
def _unicode_punct_table() -> dict:
    return dict.fromkeys(i for i in range(sys.maxunicode)
                         if unicodedata.category(chr(i)).startswith("P"))


def _loose(text: str) -> str:
    """MultiChoiceRegexFilter's ignore_case + ignore_punctuation: Unicode punctuation (P*)."""
    return text.lower().translate(_unicode_punct_table())


def _last(pattern: str, text: str) -> str:
    hits = re.findall(pattern, text)
    return hits[-1].strip() if hits else ""


def lmeval_flan_cot_flexible(response: str, choices: list[str]) -> Extraction:
    """`mmlu_flan_cot_zeroshot` filter `flexible-extract` (multi_choice_regex, group_select -1).

    Three tries, each taking the LAST hit: "(X)" (capital, case-sensitive); else a choice's text
    in the lower-cased, punctuation-free response (longest choices tried first), mapped to "(X)";
    else ":" + optional whitespace + a letter of the doc's choices, mapped to "(X)".
    Trap: a response that merely names a choice ("Venus is hot... the answer is D") scores as
    that choice. An empty choice text matches everywhere, and its empty last hit skips to step 3.
    """
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    found = _last(r"(\([A-Z]\))", response)
    if not found:
        texts = {_loose(c.strip()): f"({x})" for c, x in zip(choices, letters, strict=True)}
        branches = sorted((re.escape(t) for t in texts), key=len, reverse=True)
        found = _last("|".join(branches), _loose(response))
        found = texts.get(found, found) if found else found
    if not found:
        found = _last(rf":[\s]*({'|'.join(letters)})", response)
        found = f"({found})" if found else ""
    return _scored(found or INVALID, empty=not response.strip())


# simple-evals (openai/simple-evals common.py, mmlu_eval.py): answer markers in the order tried.
# "\s*" stays inside a marker; after the marker only spaces/tabs may precede the letter.
SIMPLE_EVALS_MARKERS = (
    r"Answer\s*:", "Answer\\s*:" + "\u200b" * 6,  # the second: Korean outputs' zero-width spaces
    r"উত্তর\s*:", r"उत्तर\s*:", "উত্তরঃ", r"উত্তর\s*:", r"Antwort\s*:", r"답변\s*:", r"정답\s*:",
    r"답\s*:", r"答案\s*：", r"答案\s*:", r"答\s*：", r"答\s*:", r"答复\s*：", r"答曰\s*：",
    "الإجابة:", "الجواب:", "إجابة:", "الإجابة النهائية:", "الإجابة الصحيحة:",
    "الإجابة الصحيحة هي:", "الإجابة هي:", "الجواب النهائي:", r"Respuesta\s*:", r"Risposta\s*:",
    r"答え\s*:", r"答え\s*：", r"回答\s*:", r"回答\s*：", r"解答\s*:", r"Jawaban\s*:",
    r"Réponse\s*:", r"Resposta\s*:", r"Jibu\s*:", r"Idahun\s*:", r"Ìdáhùn\s*:", r"Idáhùn\s*:",
    "A\u0300mọ\u0300na\u0300\\s*:", r"Àdáhùn\s*:", "A\u0300nu\u0301go\u0323\\s*:", r"Àṣàyàn\s*:",
)
# The letter class: A-D, the Arabic RANGE U+0623-U+062F (not just four letters), four Bengali
# letters, full-width Ａ-Ｄ. With (?i) "a"-"d" and "ａ"-"ｄ" also match, and then score wrong.
_SE_LETTER = "[ \t]*([A-D]|[\u0623-\u062f]|[অ]|[ব]|[ড]|[ঢ]|[Ａ]|[Ｂ]|[Ｃ]|[Ｄ])"
_SE_MAP = {"أ": "A", "ب": "B", "ج": "C", "د": "D", "অ": "A", "ব": "B", "ড": "C", "ঢ": "D",
           "Ａ": "A", "Ｂ": "B", "Ｃ": "C", "Ｄ": "D"}
_SE_STRIP = ("**", "$\\boxed{", "}$", "\\$", "$\\text{", "$", "\\mathrm{", "\\{", "\\text",
             "\\(", "\\mathbf{", "{", "\\boxed")


def simple_evals_normalize(response: str) -> str:
    """simple-evals normalize_response: drop markdown bold and LaTeX wrappers, in this order."""
    for token in _SE_STRIP:
        response = response.replace(token, "")
    return response


def simple_evals_mmlu(response: str, choices=None) -> Extraction:
    """simple-evals MMLU / multilingual MMLU: the first marker (in list order) that matches wins,
    at its FIRST occurrence ("Antwort: A ... Antwort: C" gives A); the hit is mapped to A-D
    and compared to the gold letter exactly (a lower-case "b" is extracted but scores 0)."""
    if not response.strip():
        return Extraction(None, "", "empty response")
    text = simple_evals_normalize(response)
    for marker in SIMPLE_EVALS_MARKERS:
        m = re.search("(?i)" + marker + _SE_LETTER, text)
        if m:
            raw = m.group(1)
            letter = _SE_MAP.get(raw, raw).strip()
            if letter in ("A", "B", "C", "D"):
                return Extraction(letter, letter, None)
            return Extraction(None, letter, f"marker followed by {raw!r}, not a letter A-D")
    return Extraction(None, "", "no match")


# (task, filter) -> extractor(response, choices); lm-eval names its filters per task.
PIPELINES = {
    ("mmlu_generative", "get_response"): lmeval_mmlu_generative,
    ("mmlu_flan_cot_zeroshot", "strict-match"): lmeval_flan_cot_strict,
    ("mmlu_flan_cot_zeroshot", "flexible-extract"): lmeval_flan_cot_flexible,
    ("mmlu_pro", "custom-extract"): lmeval_mmlu_pro,
    ("mmlu_redux_generative", "default"): lmeval_mmlu_redux_generative,
    ("mmlu_llama", "strict_match"): lmeval_mmlu_llama,
    ("mmlu_cot_llama", "strict_match"): lmeval_mmlu_cot_llama,
    ("mmlu_pro_llama", "strict_match"): lmeval_mmlu_pro_llama,
    ("simple_evals", "mmlu"): simple_evals_mmlu,
}

"""The benchmark's figures: one ToolResult per tool run, printed, and the lm-eval/mmlu-bench
ratios with the per-question agreement (agreement.py) beside them."""

from __future__ import annotations

from dataclasses import dataclass, field

from agreement import compare


@dataclass
class ToolResult:
    label: str
    tool: str
    backend: str
    status: str  # ok, failed, skipped
    command: list[str] = field(default_factory=list)
    wall_s: float | None = None
    tool_reported_s: float | None = None  # the tool's own timing, see tool_reported_what
    tool_reported_what: str | None = None
    startup_s: float | None = None  # llama.cpp server start-up, included in wall_s
    peak_tree_rss_mib: float | None = None
    peak_process_rss_mib: float | None = None
    questions: int | None = None
    prompt_tokens: int | None = None  # context + continuation tokens of every request
    model_input_tokens: int | None = None  # mmlu-bench's own n_tokens (what its model reads)
    questions_per_s: float | None = None
    tokens_per_s: float | None = None
    mmlu_acc: float | None = None  # the accuracy of the results row named acc_name
    group_tree: dict | None = None  # group -> members, from the tool's results.json
    warning: str | None = None
    output_dir: str | None = None
    note: str | None = None
    acc_name: str = "mmlu"


def fill_rates(r: ToolResult) -> None:
    if r.wall_s and r.questions is not None:
        r.questions_per_s = round(r.questions / r.wall_s, 3)
    if r.wall_s and r.prompt_tokens is not None:
        r.tokens_per_s = round(r.prompt_tokens / r.wall_s, 1)


def ratio(x, y):
    return round(x / y, 2) if x is not None and y else None


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def print_tool(r: ToolResult) -> None:
    print(f"\n=== {r.label} ===")
    if r.status != "ok":
        print(f"  {r.status}: {r.note}")
        return
    extra = []
    if r.tool_reported_s is not None:
        extra.append(f"{r.tool_reported_what}: {r.tool_reported_s:.1f} s")
    if r.startup_s is not None:
        extra.append(f"incl. server start-up {r.startup_s:.1f} s")
    print(f"  wall time        : {r.wall_s:.1f} s" + (f"  ({'; '.join(extra)})" if extra else ""))
    print(f"  peak RSS         : {fmt(r.peak_tree_rss_mib, ' MiB')} process tree "
          f"(summed, sampled), {fmt(r.peak_process_rss_mib, ' MiB')} largest single process")
    print(f"  questions        : {fmt(r.questions)}  ->  {fmt(r.questions_per_s, ' q/s', 2)}")
    print(f"  prompt tokens    : {fmt(r.prompt_tokens)}  ->  {fmt(r.tokens_per_s, ' tok/s')}"
          "  (context + continuation of every request, as lm-eval counts)")
    if r.model_input_tokens is not None:
        print(f"  model input      : {fmt(r.model_input_tokens)} tokens (mmlu-bench's n_tokens: "
              "one context per question when each answer is one token)")
    print(f"  {r.acc_name + ' acc':<17}: {fmt(r.mmlu_acc, '', 4)}")
    if r.note:
        print(f"  note             : {r.note}")
    if r.warning:
        print(f"  WARNING          : {r.warning}")
    print(f"  output           : {r.output_dir}")


def _print_agreement(lm: ToolResult, mb: ToolResult, cmp: dict) -> None:
    n = cmp["questions"]
    print(f"  questions compared          : {n} (only in lm-eval: {cmp['only_first']}, "
          f"only in mmlu-bench: {cmp['only_second']})")
    print(f"  identical prompts (sha256)  : {cmp['prompts_identical']}/{n}")
    print(f"  max |log-likelihood diff|   : {cmp['max_abs_ll_diff']:.3g}  at {cmp['max_at']}"
          + (f"  ({cmp['missing_lls']} missing values skipped)" if cmp["missing_lls"] else ""))
    if cmp.get("choice_counts_differ"):
        print(f"  choice counts differ        : {cmp['choice_counts_differ']} questions "
              "(their log-likelihoods are not compared)")
    print(f"  prediction agreement        : {cmp['pred_agree']}/{n}"
          + (f" ({100 * cmp['pred_agreement']:.1f}%)" if n else ""))
    print(f"  prompt tokens               : lm-eval {fmt(lm.prompt_tokens)}, "
          f"mmlu-bench {fmt(mb.prompt_tokens)}")
    print(f"  {lm.acc_name + ' acc':<28}: lm-eval {fmt(lm.mmlu_acc, '', 4)}, "
          f"mmlu-bench {fmt(mb.mmlu_acc, '', 4)}")


def print_comparison(title: str, lm: ToolResult, mb: ToolResult, cmp: dict | None) -> dict:
    out = {"time_ratio": ratio(lm.wall_s, mb.wall_s),
           "memory_ratio_tree": ratio(lm.peak_tree_rss_mib, mb.peak_tree_rss_mib),
           "memory_ratio_process": ratio(lm.peak_process_rss_mib, mb.peak_process_rss_mib),
           "agreement": cmp}
    print(f"\n=== {title} ===")
    print(f"  time   lm-eval / mmlu-bench : {fmt(out['time_ratio'], 'x', 2)}  "
          f"({fmt(lm.wall_s, ' s')} / {fmt(mb.wall_s, ' s')})")
    print(f"  memory lm-eval / mmlu-bench : {fmt(out['memory_ratio_tree'], 'x', 2)} process tree"
          f"  ({fmt(lm.peak_tree_rss_mib, ' MiB')} / {fmt(mb.peak_tree_rss_mib, ' MiB')}); "
          f"{fmt(out['memory_ratio_process'], 'x', 2)} largest process")
    if cmp:
        _print_agreement(lm, mb, cmp)
    return out


def reference_check(name: str, questions: list[dict], ref: list[dict],
                    same_model: bool) -> dict:
    cmp = compare(questions, ref)
    n = cmp["questions"]
    line = f"  {name:<22}: {n} questions in the reference; prompts identical " \
           f"{cmp['prompts_identical']}/{n}"
    if same_model and n:
        line += (f"; max |LL diff| {cmp['max_abs_ll_diff']:.3g} ({cmp['max_at']}); "
                 f"predictions agree {cmp['pred_agree']}/{n}")
    print(line)
    return cmp


def expected_tree(subjects: list[str]) -> dict[str, list[str]]:
    """mmlu -> categories -> subjects, from mmlu-bench's table of lm-eval's grouping."""
    from mmlu_bench.tasks.mmlu import CATEGORY_OF

    tree: dict[str, list[str]] = {"mmlu": []}
    for s in subjects:
        group = f"mmlu_{CATEGORY_OF[s]}"
        if group not in tree:
            tree["mmlu"].append(group)
            tree[group] = []
        tree[group].append(f"mmlu_{s}")
    return tree


def check_tree(name: str, got: dict | None, want: dict[str, list[str]]) -> bool:
    same = got is not None and {k: sorted(v) for k, v in got.items()} == \
        {k: sorted(v) for k, v in want.items()}
    n_sub = sum(len(v) for k, v in want.items() if k != "mmlu")
    print(f"  {name:<22}: " + (f"as expected (mmlu -> {len(want['mmlu'])} categories -> "
                                f"{n_sub} subjects)" if same else f"DIFFERS: {got}"))
    return same

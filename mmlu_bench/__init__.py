"""mmlu-bench: MMLU scores for the models you run yourself, identical to lm-eval, faster.

Read schema.py first: it holds every type that crosses a stage.
"""

__version__ = "0.1.0"

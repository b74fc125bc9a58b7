"""mmlu-bench: MMLU scores for the models you run yourself, identical to lm-eval, faster.

    import mmlu_bench
    result = mmlu_bench.evaluate("demo", limit=2)    # a Result: summary, records, folder
    print(result)

The Python API is api.py (evaluate, load_run, compare) and result.py (Result). Read schema.py
next: it holds every type that crosses a stage; docs/architecture.md shows how they fit.
"""

__version__ = "0.1.0"

# name -> the module that defines it. Imported on first use, so `import mmlu_bench` reads no
# other module (never torch) and the CLI starts without the API's imports.
_LAZY = {"evaluate": "api", "load_run": "api", "compare": "api", "Result": "result",
         "RunConfig": "config", "UserError": "errors"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})

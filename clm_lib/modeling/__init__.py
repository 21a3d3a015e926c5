"""The base model and its tokenizer: build the demo one (``build``), load any local one (``load``), and per-task
adapters with the router that picks one per prompt (``task_adapters``, ``router``).

Submodules import torch and transformers; import them where they are used, not at DAG parse time.
"""

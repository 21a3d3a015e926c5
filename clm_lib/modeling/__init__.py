"""The base model and its tokenizer: build the demo one (``build``), load any local one (``load``), and per-task
adapters with the router that picks one per prompt (``task_adapters``, ``router``); the prompt format (``prompt``),
labelled examples (``examples``) and generation (``generate``), shared by training, evaluation and serving.

Submodules import torch and transformers; import them where they are used, not at DAG parse time.
"""

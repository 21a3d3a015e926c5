"""The base model and its tokenizer: build the demo one (``build``), load any local one (``load``).

Submodules import torch and transformers; import them where they are used, not at DAG parse time.
"""

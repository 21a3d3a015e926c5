"""Continual training: one loop (``loop``), strategies as plugins on it (``strategies``), the entry point
``recipe.train_update`` (``clm train``: ``train_cli``), per-task adapters (``adapters``), DeepSpeed
(``deepspeed_engine``), and the shared prompt template (``formatting``).

Submodules import torch; import them where they are used, not at DAG parse time.
"""

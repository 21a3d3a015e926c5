"""Continual training: one loop (``loop``), strategies as plugins on it (``strategies``), the entry point
``recipe.train_update`` (``clm train``: ``train_cli``), per-task adapters (``adapters``) and DeepSpeed
(``deepspeed_engine``). The prompt format and the example encoding are ``clm_lib.modeling``'s (``prompt``,
``examples``): evaluation and serving share them.

Submodules import torch; import them where they are used, not at DAG parse time.
"""

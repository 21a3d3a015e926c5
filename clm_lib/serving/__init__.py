"""Serving: an OpenAI-style server per model version, two slots (blue, green) and a router between them.

- :mod:`~clm_lib.serving.api` is the slot server ``clm serve`` runs: ``/v1/completions``,
  ``/v1/chat/completions``, ``/v1/models``, ``/v1/feedback``, ``/healthz`` and Prometheus ``/metrics``;
- :mod:`~clm_lib.serving.keys` (API keys), :mod:`~clm_lib.serving.guards` (body size, short errors) and
  :mod:`~clm_lib.serving.review` (corrections wait for an operator) keep the API safe to expose;
- :mod:`~clm_lib.serving.router` splits traffic between the slots by weight and switches atomically;
- :mod:`~clm_lib.serving.backends` runs the slots somewhere: ``local`` processes or ``kubernetes`` Deployments,
  behind one interface that the promotion and rollback code drive.

Importing this package imports nothing heavy: the config module is read when DAGs are parsed.
"""

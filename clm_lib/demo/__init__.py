"""The demo's data: a generated continual-learning stream of support tickets (see ``stream``)."""

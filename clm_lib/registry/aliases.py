"""The MLflow alias names clm uses, defined once: every module and test imports them from here.

Aliases, not stages (MLflow 2.9+). clm's deployment history is the truth about which version served when;
``champion`` and ``previous`` are written from it (:func:`clm_lib.deploy.reconcile.reconcile_aliases`).
"""

CHAMPION = "champion"
"""The version that serves all traffic."""
PREVIOUS = "previous"
"""Where a rollback goes by default: the newest earlier champion that was neither rolled back nor rejected."""
CHALLENGER = "challenger"
"""The newest registered candidate not yet promoted."""

ALL = (CHAMPION, PREVIOUS, CHALLENGER)
"""In the order the screens and the API list them."""

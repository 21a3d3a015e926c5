"""Small helpers the plugin tests share: signing a request in as one of the test users (:data:`conftest.USERS`)."""

from __future__ import annotations


def bearer(tokens: dict[str, str], name: str) -> dict[str, str]:
    """Headers of a REST call made as user ``name`` (its JWT from the ``tokens`` fixture)."""
    return {"Authorization": f"Bearer {tokens[name]}"}


def signed_in(client, tokens: dict[str, str], name: str):
    """The screens' test ``client``, carrying user ``name``'s JWT in the cookie the Airflow UI sets."""
    client.set_cookie("_token", tokens[name], domain="localhost")
    return client

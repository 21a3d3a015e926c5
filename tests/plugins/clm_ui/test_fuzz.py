"""Fuzzing the screens' one form, the Serving screen's rollback button (``POST /pluginsv2/clm/serving/rollback``),
and the screens' query strings, with Hypothesis, as the FAB provider serves them: whatever the form fields, the
security token and the Origin header hold, the answer is never a 5xx and a refused POST changes nothing. The
screens have no OpenAPI schema, so the cases are drawn from the fields the form really has.

The inputs that once answered 500 are pinned below as plain regression tests."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.plugins.test_rbac import clm_state, snapshot  # noqa: F401 (clm_state is a fixture)

POST = "/clm/serving/rollback"
SAME_ORIGIN = {"Origin": "http://localhost"}
EXAMPLES = 80
CASES: Counter[str] = Counter()
NO_SHRINK = (Phase.explicit, Phase.generate)
"""A failure is reported as found: shrinking it could take minutes, past the run's time bound."""

_text = st.text(max_size=40) | st.sampled_from(["", " ", "1", "2", "0", "-1", "1e3", "²", "\uff11", "9" * 5000, "\x00"])


def _token(flask_app, fab_user, name: str) -> str:
    from clm_ui import csrf

    with flask_app.test_request_context():
        return csrf.form_token(fab_user(name))


@pytest.fixture
def otto(client, tokens):
    client.set_cookie("_token", tokens["otto"], domain="localhost")
    return client


@pytest.mark.slow
def test_the_rollback_form_never_answers_5xx(otto, flask_app, fab_user, clm_state):  # noqa: F811
    good = _token(flask_app, fab_user, "otto")
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        token=st.just(good) | _text | st.builds(lambda a, b: f"{a}.{b}", _text, _text),
        reason=_text,
        to_version=_text,
        origin=st.sampled_from([None, "http://localhost", "https://evil.example", "null", "ht\u00e9p://x", ""]),
        extra=st.dictionaries(st.text(min_size=1, max_size=8), _text, max_size=2),
    )
    def check(token, reason, to_version, origin, extra):
        form = {**extra, "clm_csrf": token, "reason": reason, "to_version": to_version}
        before = snapshot(clm_state)
        response = otto.post(POST, data=form, headers={"Origin": origin} if origin is not None else {})
        CASES["rollback form"] += 1
        statuses[response.status_code] += 1
        assert response.status_code < 500, (form, origin, response.text[:300])
        assert "Traceback" not in response.text
        if response.status_code != 303:
            assert snapshot(clm_state) == before, (form, origin)

    check()
    print(f"rollback form as operator: {CASES['rollback form']} cases, statuses {dict(sorted(statuses.items()))}")
    assert 403 in statuses and 400 in statuses, statuses


@pytest.mark.slow
def test_the_screens_query_strings_never_answer_5xx(otto, clm_state):  # noqa: F811
    statuses: Counter[int] = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(
        page=st.sampled_from(["/clm/", "/clm/drift", "/clm/serving", "/clm/models", "/clm/models/compare",
                              "/clm/models/2", "/clm/models/" + "9" * 40]),
        query=st.dictionaries(st.sampled_from(["rolled_back", "focus", "page", "limit", "x", "offset", "hoffset",
                                               "alias", "actor", "a", "b"]), _text, max_size=3),
    )
    def check(page, query):
        response = otto.get(page, query_string=query)
        CASES["screens"] += 1
        statuses[response.status_code] += 1
        assert response.status_code < 500, (page, query, response.text[:300])

    check()
    print(f"screens as operator: {CASES['screens']} cases, statuses {dict(sorted(statuses.items()))}")
    assert statuses[200] > 0


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("²." + "a" * 43, id="superscript-two-timestamp"),
        pytest.param("1700000000.é" + "a" * 42, id="non-ascii-signature"),
        pytest.param("9" * 5000 + "." + "a" * 43, id="5000-digit-timestamp"),
        pytest.param("\uff11\uff17" + "\uff10" * 8 + ".abc", id="fullwidth-digits"),
    ],
)
def test_regression_a_malformed_form_token_was_a_500(otto, clm_state, token):  # noqa: F811
    before = snapshot(clm_state)

    response = otto.post(POST, data={"clm_csrf": token, "reason": "fuzz"}, headers=SAME_ORIGIN)

    assert response.status_code == 403, response.text[:300]
    assert "security token" in response.text and "Rollback not done." in response.text
    assert snapshot(clm_state) == before

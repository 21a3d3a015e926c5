"""What every clm view shares: the template folder, rendering a page, building one from :mod:`clm_lib.reporting`
without ever showing a traceback, links to Airflow, query-string arguments, and the CSRF exemption of POST forms.

The screens' modules (``views*.py``) import from here and never from each other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlencode

from flask import render_template, request, url_for

from clm_lib.airflow.settings import resolve_config
from clm_lib.errors import ClmError
from clm_lib.reporting.stores import StoreDown
from clm_ui.auth import current_user
from clm_ui.display import HELPERS

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

# FAB creates view blueprints with ``__name__`` of flask_appbuilder, so a relative template folder would be
# looked up inside FAB's package: give an absolute one. Templates are namespaced under ``clm/``.
TEMPLATES = str(HERE / "templates")


def airflow_root() -> str:
    # The FAB app is mounted at <base path>/pluginsv2; links to Airflow's own pages go to <base path>/.
    return request.script_root.removesuffix("/pluginsv2")


def airflow_api() -> str:
    """Where a view calls Airflow's REST API (``CLM_AIRFLOW_URL``, else the address the request came in on)."""
    from clm_lib.airflow.retrain import airflow_url

    return airflow_url(request.host_url.rstrip("/") + airflow_root())


def page(template: str, status: int = 200, **context):
    user = current_user()
    return (
        render_template(
            template,
            user_name=user.get_name() if user else None,
            airflow_root=airflow_root(),
            **HELPERS,
            **context,
        ),
        status,
    )


def built(name: str, build, template: str, status: int = 200, crumb: str | None = None, **context):
    """Render ``template`` with what ``build(cfg)`` computed, or a problem page that shows no traceback."""
    crumb = crumb or name.title()
    try:
        data = build(resolve_config())
    except StoreDown as exc:  # a store that cannot be read is a state of the page: which one, since when
        return page("clm/problem.html", 503, crumb=crumb, title=f"{exc.store} cannot be read", message=str(exc),
                    notice="warn")  # fmt: skip
    except LookupError as exc:  # an unknown version, batch or table named in the address: say which
        return page("clm/problem.html", 404, crumb=crumb, title="Not found", message=str(exc))
    except ClmError as exc:
        return page("clm/problem.html", 500, crumb=crumb, title="clm's configuration is invalid", message=str(exc))
    except Exception:  # the page must never show a traceback; the log has it
        log.exception("clm %s page failed", name)
        return page("clm/problem.html", 500, crumb=crumb, title=f"The {name} page could not be built",
                    message="An unexpected error occurred; the Airflow api-server log has the details.")  # fmt: skip
    return page(template, status, o=data, **context)


def screen(name: str, build, template: str, crumb: str, **context):
    """:func:`built` for a page that reads the query string (``build(cfg, request.args)``), answering with the status
    the page computed (404 unknown, 422 bad filter) when it rendered."""
    made = {}

    def run(cfg):
        made["page"] = build(cfg, request.args)
        return made["page"]

    body, status = built(name, run, template, crumb=crumb, **context)
    return body, (made["page"].status if status == 200 and "page" in made else status)


def link(endpoint: str, **changes) -> str:
    """This page's URL with ``changes`` to its query string (None removes an argument)."""
    args = {k: v for k, v in request.args.items() if v}
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = str(value)
    query = urlencode(args)
    return url_for(endpoint) + (f"?{query}" if query else "")


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A paging argument from the query string: out of range or not a number falls back to ``default``."""
    value = request.args.get(name, type=int)
    return value if value is not None and low <= value <= high else default


def exempt_from_session_csrf(*views) -> None:
    """Flask-WTF's CSRFProtect would reject these POST handlers before they run; :mod:`clm_ui.csrf` checks them
    instead (that module says why a session-backed token cannot be used under /pluginsv2)."""
    from airflow.providers.fab.www.app import csrf as fab_csrf

    for view in views:
        fab_csrf.exempt(view)

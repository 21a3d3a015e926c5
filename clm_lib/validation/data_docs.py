"""One batch's Great Expectations verdict as a GX Data Docs page, built on demand from clm's database.

The page is GX's own: the stored verdict (:attr:`clm_lib.validation.suite.SuiteResult.expectations`, one row of
``validation_results``) is rebuilt into an ``ExpectationSuiteValidationResult`` and rendered by GX's
``ValidationResultsPageRenderer`` and ``DefaultJinjaPageView``. Two things are changed on the way:

- GX 1.24's templates do not escape what they show, and failing values are records' text (hostile input), so
  every stored text is HTML-escaped before GX sees it.
- Its templates load Bootstrap, jQuery, bootstrap-table, Font Awesome, popper, datepicker and Vega from public
  CDNs and a logo from S3. clm never fetches from the internet, so every script, every ``<link>``, every CSS
  ``url()`` to another host and every ``src``/``href`` that leaves the page is removed, and a note at the top
  says so. The page is plain HTML with inline styles; the screen serves it with a CSP that allows no script.

Pages live in ``$CLM_HOME/gx/data_docs/validations/<batch_id>.html``, written when asked for and missing or older
than the stored verdict, so nothing needs a scheduler.
"""

from __future__ import annotations

import html
import logging
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clm_lib.config import ClmConfig
from clm_lib.reporting.params import NotFound
from clm_lib.reporting.validation import BatchValidation, get_validation

log = logging.getLogger(__name__)

BATCH_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""A batch id as clm makes them; the first character is not a dot, so ``.`` and ``..`` are never ids."""

NOTE = (
    '<div id="clm-note" style="padding:.5em 1em;margin:0;background:#fff3cd;border-bottom:1px solid #e0c36c;'
    'font:14px sans-serif">Great Expectations Data Docs for batch <code>{batch}</code>, served by clm. The '
    "styles and scripts these pages load from public CDNs (Bootstrap, jQuery, Font Awesome, Vega...) are removed: "
    "clm never fetches from the internet, so the page is unstyled and its buttons do nothing.<br>Expectations, "
    "in suite order (GX's page names them in words): {names}.</div>"
)

_SCRIPT = re.compile(r"<script\b.*?</script\s*>", re.I | re.S)
_LINK = re.compile(r"<link\b[^>]*>", re.I)
# Data is escaped before rendering (no quote survives in it), so a quoted attribute can only be GX's markup.
_URL_ATTR = re.compile(r"""\s(?:src|href|srcset|action|poster)\s*=\s*(?:"(?!#)[^"]*"|'(?!#)[^']*')""", re.I)
_CSS_URL = re.compile(r"""url\(\s*['"]?\s*(?:[a-z][a-z0-9+.-]*:|//)[^)]*\)""", re.I)
_BODY = re.compile(r"<body\b[^>]*>", re.I)


def docs_dir(cfg: ClmConfig) -> Path:
    """Where the validation pages are written."""
    return cfg.home / "gx" / "data_docs" / "validations"


def check_batch_id(batch_id: str) -> str:
    """``batch_id`` when it is a plain id; else :class:`NotFound` naming it (cut, it is the caller's text)."""
    if not BATCH_ID.fullmatch(batch_id):
        raise NotFound(f"no ingestion batch {batch_id[:100]!r}")
    return batch_id


def page_path(cfg: ClmConfig, batch_id: str) -> Path:
    """The page's file, checked to be a plain file directly under :func:`docs_dir` (no symlink anywhere in it)."""
    path = docs_dir(cfg) / f"{check_batch_id(batch_id)}.html"
    # ``cfg.home`` is resolved, so a page where clm put it is its own realpath; a symlinked file or folder is not.
    if Path(os.path.realpath(path)) != path or path.is_symlink():
        raise NotFound(f"the Data Docs page of batch {batch_id!r} is not where clm writes it")
    return path


def _escaped(value: Any) -> Any:
    """``value`` with every text in it HTML-escaped: GX's templates insert text as markup."""
    if isinstance(value, str):
        return html.escape(value, quote=True)
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {html.escape(str(k)): _escaped(v) for k, v in value.items()}
    return value


def validation_result(stored: BatchValidation) -> Any:
    """GX's ``ExpectationSuiteValidationResult`` for a stored verdict, every text in it escaped."""
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    from clm_lib.validation.suite import _gx

    _gx()  # imports GX with its import-time logging quieted
    results = []
    for e in stored.expectations:
        meta = _escaped({"reason": e.reason, "detail": e.detail})
        config = ExpectationConfiguration(type=e.type, kwargs=_escaped(e.kwargs), meta=meta)
        result = {
            "element_count": e.element_count,
            "unexpected_count": e.unexpected_count,
            "unexpected_percent": e.unexpected_percent,
            "partial_unexpected_list": _escaped(e.failing_values),
            "observed_value": _escaped(e.observed_value),
        }
        results.append(ExpectationValidationResult(success=e.success, expectation_config=config, result=result))
    passed = sum(r.success for r in results)
    batch = stored.batch
    return ExpectationSuiteValidationResult(
        success=batch.success,
        results=results,
        suite_name=_escaped(batch.suite),
        statistics={
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        meta={
            "run_id": RunIdentifier(run_name=batch.batch_id, run_time=batch.validated_at),
            "batch_spec": {"batch_id": batch.batch_id, "source": _escaped(batch.source)},
            "active_batch_definition": None,
        },
    )


def offline(page: str, stored: BatchValidation) -> str:
    """``page`` with nothing left that would fetch from elsewhere, and the note saying so at the top."""
    page = _SCRIPT.sub("", page)
    page = _LINK.sub("", page)
    page = _URL_ATTR.sub("", page)
    page = _CSS_URL.sub("none", page)
    # GX's page says what each expectation checks but not its type or clm's quarantine code: the note does.
    names = ", ".join(f"<code>{html.escape(e.type)}</code> ({html.escape(e.reason)})" for e in stored.expectations)
    note = NOTE.format(batch=html.escape(stored.batch.batch_id), names=names or "none")
    body = _BODY.search(page)
    return page[: body.end()] + note + page[body.end() :] if body else note + page


def render(stored: BatchValidation) -> str:
    """The offline Data Docs page of a stored verdict."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(validation_result(stored))
    return offline(DefaultJinjaPageView().render(document), stored)


def _stale(path: Path, validated_at: datetime | None) -> bool:
    if not path.is_file():
        return True
    if validated_at is None:
        return False
    when = validated_at if validated_at.tzinfo else validated_at.replace(tzinfo=UTC)
    return path.stat().st_mtime < when.timestamp()


def data_docs_page(cfg: ClmConfig, batch_id: str) -> Path:
    """The Data Docs page of ``batch_id``, (re)built when missing or older than its stored verdict. Raises
    :class:`NotFound` for an id that is not a plain id (before touching the filesystem or the database), an unknown
    or never-validated batch; :class:`~clm_lib.reporting.stores.StoreDown` when the database cannot be read."""
    check_batch_id(batch_id)
    stored = get_validation(cfg, batch_id)
    path = page_path(cfg, batch_id)
    if _stale(path, stored.batch.validated_at):
        path.parent.mkdir(parents=True, exist_ok=True)
        page_path(cfg, batch_id)  # the folder now exists: check again that it is not a symlink elsewhere
        # Written aside then renamed: a page being served is never half written.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{batch_id}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(render(stored))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("built GX Data Docs page %s", path)
    return path

"""GX Data Docs pages rendered by GX itself from verdicts stored by ingesting small generated files, one of whose
failing values is a script tag."""

from __future__ import annotations

import os
import re

import pytest

from clm_lib.reporting.params import NotFound
from clm_lib.validation.data_docs import data_docs_page, docs_dir
from tests.clm_lib.reporting.validation_lake import build_validation_lake

# Anything in the page that a browser would fetch from another host (or a path GX expects next to its site).
FETCHES = re.compile(r"""(?:src|href|srcset|action)\s*=\s*(?!["']?#)|url\(|<script|<link""", re.I)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return build_validation_lake(tmp_path_factory.mktemp("data-docs") / "home")


def test_a_failing_batch_is_rendered_by_gx_with_its_expectations_and_failing_values(lake):
    path = data_docs_page(lake.cfg, lake.lake.files.batch_id)
    page = path.read_text(encoding="utf-8")

    assert path == docs_dir(lake.cfg) / f"{lake.lake.files.batch_id}.html"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert "Expectation Validation Result" in text and "Status: Failed" in text
    assert "<code>expect_column_values_to_be_in_set</code> (unknown_task)" in page  # clm's note names them
    assert "values must belong to this set" in page  # GX's own words for it
    assert "spaceships" in page  # the failing value
    assert "y" * 200 in page and "y" * 201 not in page  # stored cut at 200 characters


def test_nothing_is_fetched_from_a_cdn_and_the_page_says_so(lake):
    page = data_docs_page(lake.cfg, lake.lake.files.batch_id).read_text(encoding="utf-8")

    assert not FETCHES.search(page), FETCHES.search(page)
    assert "cdn" not in page.lower().replace("public cdns", "")
    assert 'id="clm-note"' in page and "public CDNs" in page
    assert page.index('id="clm-note"') < page.index("Expectation Validation Result")


def test_a_hostile_failing_value_comes_out_escaped(lake):
    page = data_docs_page(lake.cfg, lake.hostile.batch_id).read_text(encoding="utf-8")

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_page_is_built_once_and_rebuilt_when_older_than_the_verdict(lake):
    path = data_docs_page(lake.cfg, lake.lake.feedback.batch_id)
    path.write_text("kept", encoding="utf-8")
    assert data_docs_page(lake.cfg, lake.lake.feedback.batch_id).read_text(encoding="utf-8") == "kept"

    os.utime(path, (0, 0))  # older than the stored verdict
    assert "Expectation Validation Result" in data_docs_page(lake.cfg, lake.lake.feedback.batch_id).read_text()


@pytest.mark.parametrize("batch_id", ["..", "../../etc/passwd", "..%2F..%2Fetc", ".hidden", "a/b", "", "x" * 65])
def test_an_id_that_is_not_a_plain_id_is_refused_before_the_filesystem(lake, batch_id):
    with pytest.raises(NotFound):
        data_docs_page(lake.cfg, batch_id)
    assert not list(docs_dir(lake.cfg).parent.glob("*passwd*"))


def test_unknown_batches_are_named(lake):
    with pytest.raises(NotFound, match="nosuchbatch"):
        data_docs_page(lake.cfg, "nosuchbatch")
    assert not (docs_dir(lake.cfg) / "nosuchbatch.html").exists()


def test_a_symlinked_page_is_refused(lake, tmp_path):
    target = tmp_path / "elsewhere.html"
    target.write_text("not clm's", encoding="utf-8")
    docs_dir(lake.cfg).mkdir(parents=True, exist_ok=True)
    link = docs_dir(lake.cfg) / f"{lake.hostile.batch_id}.html"
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    try:
        with pytest.raises(NotFound, match="not where clm writes it"):
            data_docs_page(lake.cfg, lake.hostile.batch_id)
        assert target.read_text(encoding="utf-8") == "not clm's"
    finally:
        link.unlink()

import pyarrow as pa
import pytest

from clm_lib.data.records import (
    SCHEMAS,
    content_digests,
    content_ids,
    empty,
    key_splits,
    normalise,
    record_id,
    split_of,
    splits,
)

# A pinned id: changing how ids are computed would orphan every record already in a lake.
GOLDEN = ("routers", "My router reboots", "Update the firmware.")
GOLDEN_ID = "0ba1a672af0c41e0eb6faaaa802940c40807405ea82e90fd5526e7ef9aac1078"


def test_id_is_a_pinned_content_hash():
    assert record_id(*GOLDEN) == GOLDEN_ID


@pytest.mark.parametrize(
    "variant",
    [
        ("  routers ", "My router reboots\n", "Update the firmware.  "),  # surrounding whitespace
        ("routers", "My router reboots", "Update the firmware.\r\n"),  # CRLF
    ],
)
def test_id_ignores_differences_nobody_would_notice(variant):
    assert record_id(*variant) == GOLDEN_ID


def test_id_ignores_unicode_composition_and_line_break_style():
    composed = record_id("billing", "Café bill\r\ntoo high", "Sorry")
    decomposed = record_id("billing", "Cafe\u0301 bill\ntoo high", "Sorry")
    assert composed == decomposed


def test_normalise_composes_accents():
    # Curated text is what the model trains on; serving clients send composed (NFC) text.
    assert normalise(pa.array(["Cafe\u0301", None, "plain"])).to_pylist() == ["Caf\u00e9", None, "plain"]


def test_id_keeps_field_boundaries_and_nulls_apart():
    assert record_id("ab", "c", "d") != record_id("a", "bc", "d")
    assert record_id("a", "", "d") != record_id("a", None, "d")
    assert record_id("a", "b", "c") != record_id("a", "b", "C")


def test_batch_ids_match_single_ids():
    task = pa.array(["routers", "billing"])
    prompt = normalise(pa.array(["  hello\r\n", "x"]))
    response = pa.array(["r1", "r2"])
    assert content_ids(task, prompt, response).to_pylist() == [
        record_id("routers", "hello", "r1"),
        record_id("billing", "x", "r2"),
    ]


def test_split_is_stable_and_close_to_the_fraction():
    ids = content_ids(*(pa.array([f"{f}{i}" for i in range(20_000)]) for f in ("t", "p", "r")))
    first = splits(ids, 0.15).to_pylist()
    assert first == splits(ids, 0.15).to_pylist()
    assert 0.14 < first.count("eval") / len(first) < 0.16
    assert split_of(GOLDEN_ID, 0.15) == "eval"  # 0x0ba1a672 / 2**32 = 0.045
    assert split_of(GOLDEN_ID, 0.04) == "train"


def test_every_table_has_an_empty_form_with_its_schema():
    for name, schema in SCHEMAS.items():
        assert empty(name).schema == schema and empty(name).num_rows == 0


def test_splits_from_index_keys_are_the_splits_of_the_ids():
    ids, keys = content_digests(*(pa.array([f"{f} {i}" for i in range(5000)]) for f in ("t", "p", "r")))
    for fraction in (0.0, 0.1, 0.5, 0.9999999, 1.0):
        assert key_splits(keys, fraction).equals(splits(ids, fraction))
        assert key_splits(keys.slice(17, 300), fraction).equals(splits(ids.slice(17, 300), fraction))

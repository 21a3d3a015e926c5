import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clm_lib.data.landing import FileRefused
from clm_lib.data.readers import Limits, read_csv, read_file, read_jsonl, read_parquet, read_text
from clm_lib.errors import IngestError


def rows(result):
    return result.table.to_pylist()


def test_jsonl_every_line_comes_back_with_its_problem():
    data = b"\n".join(
        [
            json.dumps({"task": "routers", "prompt": "p1", "response": "r1", "ticket": 7, "tags": ["a"]}).encode(),
            b'{"task": "routers", "prompt": "p2", ',  # cut off
            b"[1, 2, 3]",
            b'{"task": "billing", "prompt": "caf\xe9 bill", "response": "r"}',  # latin-1, not UTF-8
            b'{"task": "billing", "prompt": "p5"}',
            b'{"task": "billing", "prompt": 42, "response": {"a": 1}}',
            b'{"task": "billing", "prompt": null, "response": "r"}',
            b"",
            b'{"task": "routers", "prompt": "p9", "response": "r9"}\r',
        ]
    )
    result = read_jsonl(data)
    got = rows(result)
    assert [r["line"] for r in got] == [1, 2, 3, 4, 5, 6, 7, 9]
    assert [r["problem"] for r in got] == [
        None, "malformed_json", "not_an_object", "bad_encoding", "missing_column", "not_a_string", None, None,
    ]
    assert json.loads(got[0]["metadata"]) == {"ticket": 7, "tags": ["a"]}
    assert got[1]["raw_text"] == '{"task": "routers", "prompt": "p2", '
    assert got[2]["raw_text"] == "[1, 2, 3]"
    assert got[3]["prompt"] == "caf\ufffd bill" and "0xe9" in got[3]["detail"]
    assert "missing column 'response'" in got[4]["detail"]
    assert got[5]["prompt"] == "42" and got[5]["response"] == '{"a": 1}' and "int" in got[5]["detail"]
    assert got[6]["prompt"] is None  # null is a value; validation, not the reader, rejects it
    assert got[7]["response"] == "r9"
    assert result.notes == ["1 blank lines skipped (no record on them): 8"]


def test_jsonl_empty_file_and_bom():
    empty = read_jsonl(b"")
    assert empty.table.num_rows == 0 and empty.notes == ["empty file: no records"]
    bom = read_jsonl(b'\xef\xbb\xbf{"task": "t", "prompt": "p", "response": "r"}\n')
    assert rows(bom)[0]["problem"] is None and rows(bom)[0]["task"] == "t"


def test_csv_quoted_newlines_keep_their_starting_line():
    text = (
        "task,prompt,response,channel\r\n"
        'routers,"line one\nline two",fine,email\r\n'
        "billing,short,ok,phone\r\n"
        "\r\n"
        "billing,too,many,fields,here\r\n"
        "billing,too few\r\n"
    )
    result = read_csv(text.encode())
    got = rows(result)
    assert [r["line"] for r in got] == [2, 4, 6, 7]
    assert got[0]["prompt"] == "line one\nline two" and json.loads(got[0]["metadata"]) == {"channel": "email"}
    assert got[1]["problem"] is None
    assert [r["problem"] for r in got[2:]] == ["wrong_field_count", "wrong_field_count"]
    assert json.loads(got[2]["raw_text"]) == ["billing", "too", "many", "fields", "here"]
    assert "1 blank lines" in result.notes[0]


def test_csv_bad_encoding_and_missing_column():
    result = read_csv(b"task,prompt\nrouters,caf\xe9\nrouters,fine\n")
    got = rows(result)
    assert [r["problem"] for r in got] == ["bad_encoding", "missing_column"]
    assert got[0]["prompt"] == "caf\ufffd" and "0xe9" in got[0]["detail"]
    assert "missing column 'response'" in got[1]["detail"] and got[1]["response"] is None
    assert any("every record is quarantined" in n for n in result.notes)


def test_csv_empty_and_header_only():
    assert read_csv(b"").notes == ["empty file: no header and no records"]
    header_only = read_csv(b"task,prompt,response\n")
    assert header_only.table.num_rows == 0 and header_only.notes == ["header only: no records"]


def test_csv_repeated_header_is_refused():
    with pytest.raises(IngestError, match="repeats column"):
        read_csv(b"task,prompt,prompt,response\n")


def test_parquet_wrong_types_keep_values_and_extras(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table(
        {
            "task": pa.array(["routers", "billing"]).dictionary_encode(),
            "prompt": pa.array([12345, None], pa.int64()),
            "response": pa.array(["ok", "fine"], pa.large_string()),
            "score": [0.5, 1.5],
        }
    )
    pq.write_table(table, path)
    got = rows(read_parquet(path))
    assert [r["line"] for r in got] == [1, 2]
    assert got[0]["problem"] == "not_a_string" and got[0]["prompt"] == "12345" and "int64" in got[0]["detail"]
    assert got[1]["problem"] is None and got[1]["prompt"] is None  # a null is not a wrong type
    assert got[0]["task"] == "routers" and got[1]["response"] == "fine"
    assert json.loads(got[1]["metadata"]) == {"score": 1.5}


def test_parquet_missing_column_and_corrupt_file(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"task": ["routers"], "prompt": ["p"]}), path)
    result = read_parquet(path)
    assert rows(result)[0]["problem"] == "missing_column"
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(IngestError, match=r"broken\.parquet"):
        read_parquet(broken)


def test_read_file_dispatches_by_extension(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"task": "t", "prompt": "p", "response": "r"}\n')
    assert read_file(tmp_path / "a.jsonl").format == "jsonl"
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(IngestError, match=r"unsupported file type '\.txt'"):
        read_file(tmp_path / "a.txt")
    with pytest.raises(IngestError, match="cannot read"):
        read_file(tmp_path / "missing.csv")


def test_parquet_compression_bomb_is_refused_after_one_batch(tmp_path):
    """One long prompt repeated: the footer declares kilobytes (dictionary-encoded), Arrow decodes megabytes."""
    path = tmp_path / "bomb.parquet"
    n, long = 20_000, "x" * 2_000
    pq.write_table(pa.table({"task": ["routers"] * n, "prompt": [long] * n, "response": ["ok"] * n}), path,
                   row_group_size=1_000)
    meta = pq.ParquetFile(path).metadata
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    cap = 1_000_000
    assert declared < cap < n * len(long)  # only the running count can catch it
    with pytest.raises(FileRefused, match=r"data.max_decoded_bytes \(1000000\)") as refused:
        read_parquet(path, Limits(max_decoded_bytes=cap), "bomb.parquet")
    assert refused.value.reason == "decoded_too_large"
    decoded_rows = int(re.search(r"in its first (\d+) records", refused.value.detail).group(1))
    assert decoded_rows < n and "after reading only part of it" in refused.value.detail
    # Under the cap the same file reads whole, batch by batch, in order.
    whole = read_parquet(path, Limits(max_decoded_bytes=10 * n * len(long)))
    assert whole.table.num_rows == n and whole.table["line"].to_pylist()[-1] == n


def test_parquet_row_cap_uses_the_footer_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"task": ["a"] * 10, "prompt": ["p"] * 10, "response": ["r"] * 10}), path)

    def never(*_a, **_kw):
        raise AssertionError("decoded although the footer already says it is too big")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", never)
    with pytest.raises(FileRefused, match=r"data.max_rows_per_file \(9\)") as refused:
        read_parquet(path, Limits(max_rows=9))
    assert refused.value.reason == "too_many_rows"


def test_parquet_reads_from_an_open_file(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"task": ["routers"], "prompt": ["p"], "response": ["r"]}), path)
    with path.open("rb") as fh:
        assert rows(read_parquet(fh, name="t.parquet"))[0]["prompt"] == "p"


LATIN = "task,prompt,response\nrouters,Plain ASCII prompt,Fine\nrouters,Le routeur coupe à côté,Mettez à jour\n"


def test_a_latin1_csv_names_its_encoding_or_is_read_with_it():
    data = LATIN.encode("cp1252")
    strict = read_text(data, "csv")
    got = rows(strict)
    assert [r["problem"] for r in got] == [None, "bad_encoding"]
    assert "0xe0" in got[1]["detail"] and "it looks like cp1252" in got[1]["detail"]
    assert "set data.encoding: cp1252" in strict.notes[0]

    auto = read_text(data, "csv", encoding="auto")
    assert [r["problem"] for r in rows(auto)] == [None, None]
    assert rows(auto)[1]["prompt"] == "Le routeur coupe à côté" and "read as cp1252" in auto.notes[0]
    explicit = read_text(data, "csv", encoding="latin-1")
    assert rows(explicit)[1]["response"] == "Mettez à jour" and explicit.notes[0] == "read as latin-1 (data.encoding)"


def test_a_latin1_jsonl_and_a_utf16_csv_under_auto():
    line = json.dumps({"task": "billing", "prompt": "Facture erronée", "response": "Remboursé"}, ensure_ascii=False)
    jsonl = read_text(line.encode("cp1252") + b"\n", "jsonl", encoding="auto")
    assert rows(jsonl)[0]["prompt"] == "Facture erronée" and rows(jsonl)[0]["problem"] is None
    strict = read_text(line.encode("cp1252") + b"\n", "jsonl")
    assert rows(strict)[0]["problem"] == "bad_encoding" and "looks like cp1252" in rows(strict)[0]["detail"]
    utf16 = read_text(LATIN.encode("utf-16"), "csv", encoding="auto")
    assert rows(utf16)[1]["prompt"] == "Le routeur coupe à côté"

"""The pyarrow.json fast path of read_jsonl gives exactly the rows of the line-by-line reader, or steps aside."""

from __future__ import annotations

import json

import pytest

from clm_lib.data import readers


def slow(data: bytes, monkeypatch) -> list[dict]:
    with monkeypatch.context() as m:
        m.setattr(readers, "_jsonl_arrow", lambda _data, **_kw: None)
        result = readers.read_jsonl(data)
    return [result.table.to_pylist(), result.notes]


def lines(*objects) -> bytes:
    return b"".join((o if isinstance(o, bytes) else json.dumps(o, ensure_ascii=False).encode()) + b"\n"
                    for o in objects)


REC = {"task": "routers", "prompt": "My router reboots", "response": "Update it"}

TAKEN = {
    "plain": lines(REC, {**REC, "prompt": "other"}),
    "extras of every kept type, keys out of order": lines(
        {"zeta": "z", **REC, "n": 7, "ok": True, "alpha": 'quote " backslash \\ tab \t nul \u0000 é'},
        {"zeta": "y", **REC, "n": -3, "ok": False, "alpha": "\u2028 line separator, emoji \U0001f600"},
    ),
    "escapes, CRLF line ends, BOM, no final newline": b"\xef\xbb\xbf" + lines(
        {**REC, "prompt": "tab\there \"quoted\" \\u00e9 caf\u00e9"}).replace(b"\n", b"\r\n") + json.dumps(REC).encode(),
    "whitespace around objects": b'  {"task": "routers", "prompt": "p", "response": "r"}  \n' + lines(REC),
}

REFUSED = {
    "two objects on one line": lines(REC).rstrip(b"\n") + b" " + lines(REC),
    "a blank line": lines(REC) + b"\n" + lines(REC),
    "a blank first line": b"  \n" + lines(REC),
    "a null field": lines(REC, {**REC, "response": None}),
    "a missing field": lines(REC, {"task": "routers", "prompt": "p"}),
    "a number where text belongs": lines(REC, {**REC, "task": 5}),
    "a float extra (1 would come back as 1.0)": lines({**REC, "n": 1}, {**REC, "n": 1.5}),
    "an extra missing in one row": lines({**REC, "n": 1}, REC),
    "a nested extra": lines({**REC, "meta": {"a": 1}}),
    "a timestamp-looking extra": lines({**REC, "at": "2026-01-01T00:00:00"}),
    "a repeated key": b'{"task": "a", "task": "b", "prompt": "p", "response": "r"}\n',
    "malformed JSON": lines(REC) + b"{nope\n",
    "invalid UTF-8": lines(REC) + b'{"task": "a", "prompt": "caf\xe9", "response": "r"}\n',
    "an empty file": b"",
    "a huge integer": lines({**REC, "n": 10**30}),
}


@pytest.mark.parametrize("name", TAKEN)
def test_the_fast_path_reads_what_the_slow_one_does(name, monkeypatch):
    data = TAKEN[name]
    assert readers._jsonl_arrow(data.removeprefix(b"\xef\xbb\xbf")) is not None, "expected the fast path"
    fast = readers.read_jsonl(data)
    assert [fast.table.to_pylist(), fast.notes] == slow(data, monkeypatch)
    assert fast.table.schema == readers.READ_SCHEMA


@pytest.mark.parametrize("name", REFUSED)
def test_anything_it_could_read_differently_goes_line_by_line(name, monkeypatch):
    data = REFUSED[name]
    assert readers._jsonl_arrow(data) is None
    result = readers.read_jsonl(data)
    assert [result.table.to_pylist(), result.notes] == slow(data, monkeypatch)


def test_lines_are_counted_across_scan_slices_and_blank_ones_are_still_found(monkeypatch):
    monkeypatch.setattr(readers, "_SCAN_BYTES", 64)  # many slices; lines cross their boundaries
    many = lines(*({**REC, "prompt": f"prompt {i}"} for i in range(40)))
    for data in (many, many.rstrip(b"\n"), many.replace(b"\n", b"\r\n")):
        assert readers._object_lines(data) == readers._jsonl_lines(data) == 40
        assert readers._jsonl_arrow(data).num_rows == 40
    cut = many.index(b"\n", 130) + 1
    blank = many[:cut] + b"\n" + many[cut:]  # a blank line somewhere inside
    assert readers._object_lines(blank) is None and readers._jsonl_arrow(blank) is None
    indented = many.replace(b"\n{", b"\n {")  # no line starts with "{": the exact check decides, and takes it
    assert readers._object_lines(indented) is None and readers._jsonl_arrow(indented).num_rows == 40

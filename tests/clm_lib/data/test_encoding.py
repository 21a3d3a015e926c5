"""Which encoding a text file is read with, and what people are told when it is not UTF-8."""

import codecs

import pytest

from clm_lib.config import REPO_ROOT, load_config
from clm_lib.data.encoding import choose, guess, to_utf8
from clm_lib.errors import ConfigError, IngestError

FRENCH = "task,prompt,response\nrouters,Mon routeur coupe à côté du micro-ondes \u2013 « encore »,Mettez-le à jour\n"


def test_windows_1252_is_recognised_and_utf8_passes_through():
    assert guess(FRENCH.encode("cp1252")) == "cp1252"
    assert choose(FRENCH.encode("utf-8"), "utf-8").codec == "utf-8"
    assert choose(FRENCH.encode("utf-8"), "auto") == choose(FRENCH.encode("utf-8"), "utf-8")
    assert guess(codecs.BOM_UTF16_LE + "a,b".encode("utf-16-le")) == "utf-16"


def test_bytes_that_are_not_text_in_cp1252_are_not_guessed():
    assert guess(b"task\x81\x8d") is None  # undefined in cp1252
    assert guess(b"PK\x03\x04\x14\x00\xe9") is None  # control characters: a zip, not text
    hint = choose(b"task\x81", "utf-8").hint
    assert "its encoding was not recognised" in hint and "set data.encoding" in hint


def test_strict_utf8_names_the_encoding_in_the_hint():
    chosen = choose(FRENCH.encode("cp1252"), "utf-8")
    assert chosen.codec == "utf-8"
    assert chosen.hint == ("the file is not UTF-8 (it looks like cp1252): re-save it as UTF-8 or set "
                           "data.encoding: cp1252")
    assert "quarantined (bad_encoding)" in chosen.note


def test_auto_and_explicit_codecs_transcode():
    data = FRENCH.encode("cp1252")
    auto = choose(data, "auto")
    assert auto.codec == "cp1252" and "read as cp1252" in auto.note and auto.hint is None
    assert to_utf8(data, auto.codec).decode("utf-8") == FRENCH
    assert to_utf8(data, choose(data, "latin-1").codec).decode("utf-8") == FRENCH.replace("\u2013", "\x96")
    with pytest.raises(IngestError, match="cannot be read as utf-16"):
        to_utf8(b"abc", "utf-16")  # an odd number of bytes


def test_config_refuses_an_unknown_encoding(tmp_path):
    environ = {"CLM_HOME": str(tmp_path), "CLM__DATA__ENCODING": "klingon-8"}
    with pytest.raises(ConfigError, match=r"data\.encoding.*unknown text encoding 'klingon-8'"):
        load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ)
    environ["CLM__DATA__ENCODING"] = "cp1252"
    assert load_config(REPO_ROOT / "include" / "clm.yaml", environ=environ).data.encoding == "cp1252"

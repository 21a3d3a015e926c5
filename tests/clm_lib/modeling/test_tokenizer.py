from __future__ import annotations

from transformers import AutoTokenizer

from clm_lib.modeling.corpus import support_corpus
from clm_lib.modeling.tokenizer import BOS, EOS, PAD, train_tokenizer

TEXTS = [
    "My Aurora X2 router keeps dropping Wi-Fi every evening since the update.",
    "Ünïcödé, emoji 🚀, tabs\tand\nnewlines, and a VoltDock 22 Pro we never trained on: Zyxw-9!",
    "team: network | action: firmware rollback",
]


def test_round_trip_is_exact_even_for_unseen_text(tmp_path):
    tok = train_tokenizer(support_corpus(1000, 0), vocab_size=600, out_dir=tmp_path)
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == text
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    for text in TEXTS:
        assert loaded.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)


def test_special_tokens_and_vocabulary(tmp_path):
    tok = train_tokenizer(support_corpus(1000, 0), vocab_size=600, out_dir=tmp_path)
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == (PAD, BOS, EOS)
    assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
    assert len(tok) <= 600
    # Frequent support words are learned as whole tokens: the corpus shaped the vocabulary.
    assert len(tok.encode(" router", add_special_tokens=False)) == 1
    assert tok.decode([tok.eos_token_id], skip_special_tokens=True) == ""

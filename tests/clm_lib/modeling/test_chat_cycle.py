"""A chat model runs the whole demo cycle in this process (issue #15: "a chat-template model runs the whole demo
cycle in a test").

The base is built from a config (the tiny demo base of ``include/tiny.yaml``) and given a chat template, saved with
its tokenizer and loaded back from the folder as a user's own chat model would be; the config says
``model.prompt.kind: chat`` with a system prompt. Demo drops land, are validated and curated; an update trains a
LoRA adapter on them, every task is evaluated, the version is registered in MLflow and promoted through the gate;
the champion then answers through the slot server (``create_app`` over ``load_served_model``, what ``clm serve``
runs) and the online golden set. It proves that every step renders requests with the tokenizer's chat template and
the system prompt: the training examples, the evaluation (the same answers as the slot), the served prompt, the
registered lineage (``clm.prompt``). A second update continues the first in the chat format; continuing the lineage
with the plain template is refused with the library's message, before anything is trained.

Airflow runs these same functions (tests/e2e drives them through the real scheduler, with the demo template).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import httpx
import pytest

from clm_lib.config import load_config
from clm_lib.data.ingest import held_out, ingest_landing
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import TrainingRun
from clm_lib.demo.stream import write_demo_drops
from clm_lib.deploy.golden import GoldenSet
from clm_lib.deploy.rollout import rollout
from clm_lib.errors import TrainingError
from clm_lib.evaluation.evaluate import evaluate_run
from clm_lib.evaluation.metrics import eval_subset, score_tasks
from clm_lib.modeling.examples import IGNORE_INDEX
from clm_lib.modeling.generate import generate
from clm_lib.modeling.load import load_model
from clm_lib.modeling.prompt import PROMPT_FILE, PromptFormat, prompt_format, same_answer
from clm_lib.registry.aliases import CHAMPION
from clm_lib.registry.mlflow_registry import alias_version, client, register_run
from clm_lib.serving.api import create_app
from clm_lib.serving.backends.base import SlotStatus
from clm_lib.serving.model import load_served_model
from clm_lib.training import recipe
from clm_lib.training.update import plan_update, run_update

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "include" / "tiny.yaml"

_spec = importlib.util.spec_from_file_location("serving_test_helpers", Path(__file__).parents[1] / "serving/helpers.py")
serving_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(serving_helpers)

# Zephyr's template (a widely used chat model's): role markers as plain text, every turn closed by EOS, the
# generation prompt without a newline after it. Markers that are not special tokens, an EOS inside the prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token }}{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor %}"
)
SYSTEM = "Triage the ticket."
TASKS = ["routers", "billing", "thermostats"]
MAX_LENGTH = 96
"""``model.max_length`` of tiny.yaml: the longest demo tickets, rendered in the chat template, do not fit."""


@pytest.fixture
def chat_base(tmp_path: Path, tiny_base: Path) -> Path:
    """The tiny demo base, its tokenizer given a chat template and saved: a chat model in a local folder."""
    from transformers import AutoTokenizer

    base = tmp_path / "chat-base"
    shutil.copytree(tiny_base, base)
    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    assert not tokenizer.chat_template, "the demo base has no chat template of its own"
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(base))
    assert AutoTokenizer.from_pretrained(str(base), local_files_only=True).chat_template == CHAT_TEMPLATE
    return base


def _env(tmp_path: Path, base: Path, mlflow_uri: str) -> dict[str, str]:
    return {
        "CLM_HOME": str(tmp_path / "home"),
        "CLM__MODEL__BASE_PATH": str(base),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        # Each drop starts an update: the drift policy's volume rule, not force.
        "CLM__DRIFT__VOLUME__INITIAL_ROWS": "20",
        "CLM__DRIFT__VOLUME__MIN_NEW_ROWS": "20",
        "CLM__TRAINING__MAX_STEPS": "60",
        "CLM__TRAINING__CHECKPOINT_EVERY": "60",
        # The gate and the alias moves, no serving processes: the slot server runs in this process below.
        "CLM__DEPLOY__STRATEGY": "alias",
    }


class _Slot:
    """A serving backend reduced to what the golden set asks of one: where the slot answers."""

    def __init__(self, url: str, version: str):
        self.url, self.version = url, version

    def status(self) -> dict[str, SlotStatus]:
        return {"blue": SlotStatus(slot="blue", version=self.version, healthy=True, url=self.url, weight=100)}


def _land(cfg, drop: Path) -> dict:
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(drop, cfg.landing_dir / drop.name)
    (result,) = ingest_landing(cfg)
    assert result.status == "committed", result.error
    return result.as_dict()


def _spy_encoding(monkeypatch) -> list[tuple[str, list]]:
    """Every (source, examples) the recipe encodes for training, as it encodes them."""
    encoded: list[tuple[str, list]] = []
    real = recipe.encode_table

    def spy(tokenizer, table, max_length, source, *, fmt=None):
        examples = real(tokenizer, table, max_length, source, fmt=fmt)
        encoded.append((source, [(ex, table) for ex in examples]))
        return examples

    monkeypatch.setattr(recipe, "encode_table", spy)
    return encoded


def _check_chat_encoding(tokenizer, encoded: list[tuple[str, list]], sources: set[str]) -> int:
    """Each example is the chat rendering of its prompt (BOS, system prompt, role markers), then the response and
    EOS; a prompt too long for ``model.max_length`` loses the start of the request, never the system prompt or the
    markers. Returns how many were cut so."""
    rows_by_id = {}
    for _, pairs in encoded:
        for _, table in pairs:
            rows_by_id.update({r["id"]: r for r in table.select(["id", "prompt", "response"]).to_pylist()})
    assert {source for source, pairs in encoded if pairs} == sources
    before = tokenizer(f"<s><|system|>\n{SYSTEM}</s><|user|>\n", add_special_tokens=False)["input_ids"]
    after = tokenizer("</s><|assistant|>", add_special_tokens=False)["input_ids"]
    cut = 0
    for _, pairs in encoded:
        for ex, _ in pairs:
            row = rows_by_id[ex.row_id]
            start = next(i for i, label in enumerate(ex.labels) if label != IGNORE_INDEX)
            prompt_ids, answer_ids = list(ex.input_ids[:start]), list(ex.input_ids[start:])
            assert prompt_ids[: len(before)] == before and prompt_ids[-len(after) :] == after, row["id"]
            request = tokenizer.decode(prompt_ids[len(before) : -len(after)])
            full = f"<s><|system|>\n{SYSTEM}</s><|user|>\n{row['prompt'].strip()}</s><|assistant|>"
            if request == row["prompt"].strip():
                assert prompt_ids == tokenizer(full, add_special_tokens=False)["input_ids"], row["id"]
            else:
                assert row["prompt"].strip().endswith(request) and len(ex.input_ids) == MAX_LENGTH, row["id"]
                cut += 1
            assert tokenizer.decode(answer_ids) == row["response"].strip() + "</s>"
    return cut


def test_a_chat_model_runs_the_demo_cycle_and_keeps_its_format(tmp_path, chat_base, mlflow_uri, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root (./mlruns) lands in the test's folder
    env = _env(tmp_path, chat_base, mlflow_uri)
    cfg = load_config(TINY, environ={**env, "CLM__MODEL__PROMPT__KIND": "chat", "CLM__MODEL__PROMPT__SYSTEM": SYSTEM})
    upgrade(cfg.database_url)
    drops = write_demo_drops(tmp_path / "drops", tasks=TASKS, n_per_task=160, seed=5)
    encoded = _spy_encoding(monkeypatch)

    # --- ingest → validate → curated, then the first update ----------------------------------------------------
    batch = _land(cfg, drops[0])
    assert batch["rows_curated"] > 100 and batch["rows_quarantined"] > 0  # the drops' planted problems
    plan = plan_update(cfg)
    assert plan.should_train, plan.reason
    run1 = run_update(cfg, trigger={"kind": "test"}, plan=plan)
    adapter1 = Path(run1.output_dir) / "adapter"
    assert json.loads((adapter1 / PROMPT_FILE).read_text())["kind"] == "chat"
    model1, tok = load_model(chat_base, adapter1)
    fmt = prompt_format(model1, tok)
    assert fmt.config == cfg.model.prompt and tok.chat_template == CHAT_TEMPLATE  # saved with the adapter
    assert cfg.model.max_length == MAX_LENGTH
    assert _check_chat_encoding(tok, encoded, {"new"}) > 0  # some were cut, and kept their system prompt

    # --- evaluate every task, register, promote through the gate ---------------------------------------------
    ev1 = evaluate_run(cfg, run1.id)
    assert ev1.tasks == ["routers"] and list(ev1.scores) == list(ev1.metrics) == ["routers"]
    assert ev1.matrix == [[ev1.scores["routers"]]]
    v1 = register_run(cfg, run1.id)
    promoted = rollout(cfg, v1, actor="test")
    assert promoted.status == "promoted", promoted.outcome
    assert alias_version(cfg, CHAMPION) == v1
    mv1 = client(cfg).get_model_version(cfg.registry.model_name, v1)
    assert json.loads(mv1.tags["clm.prompt"]) == {"kind": "chat", "system": SYSTEM}

    # --- the champion answers through the slot server, in the chat format --------------------------------------
    served = load_served_model(cfg, alias_version(cfg, CHAMPION))
    served_fmt = prompt_format(served.model, served.tokenizer)
    request = "My router drops wifi every evening"
    assert served_fmt.render(request) == f"<s><|system|>\n{SYSTEM}</s><|user|>\n{request}</s><|assistant|>"
    plain = PromptFormat(served.tokenizer)  # the demo template, for contrast
    (chat_ids,), (plain_ids,) = served_fmt.encode_prompts([request], 90), plain.encode_prompts([request], 90)
    golden = GoldenSet.load(cfg, v1)
    assert golden is not None and len(golden) == cfg.deploy.rules.golden_examples_per_task
    with serving_helpers.running(create_app(cfg, served, slot="blue")) as url:
        body = {"model": cfg.registry.model_name, "prompt": request, "max_tokens": 16, "temperature": 0}
        answer = httpx.post(f"{url}/v1/completions", json=body, timeout=60).json()
        chat = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": cfg.registry.model_name, "messages": [{"role": "user", "content": request}],
                  "max_tokens": 16, "temperature": 0},
            timeout=60,
        ).json()  # fmt: skip
        golden_score = golden.score(_Slot(url, v1), "blue")
    # The slot sent the system prompt and the role markers, not the demo template.
    assert answer["usage"]["prompt_tokens"] == len(chat_ids) != len(plain_ids)
    # What evaluation scored is what the slot answers: the run's adapter loaded for evaluation, the same text.
    (evaluated,) = generate(model1, tok, [request], max_new_tokens=16)
    assert answer["choices"][0]["text"] == chat["choices"][0]["message"]["content"] == evaluated
    expected = generate(model1, tok, golden.prompts, max_new_tokens=golden.max_tokens)
    hits = [same_answer(a, r) for a, r in zip(expected, golden.references, strict=True)]
    assert golden_score == pytest.approx(100.0 * sum(hits) / len(hits))
    # The evaluation scored these answers (the held-out subset, answered in the chat format)...
    subset = eval_subset(held_out(cfg, ["routers"]), cfg.evaluation.max_examples_per_task)
    answers = generate(model1, tok, subset.column("prompt").to_pylist(), max_new_tokens=24)
    right = sum(same_answer(a, r) for a, r in zip(answers, subset.column("response").to_pylist(), strict=True))
    assert 100.0 * right / subset.num_rows == pytest.approx(ev1.scores["routers"], abs=0.01)
    # ... and the model learned that format: asked in the demo template it never saw, it answers worse.
    in_template = score_tasks(model1, tok, subset, max_examples_per_task=len(subset), batch_size=64,
                              max_length=MAX_LENGTH, fmt=plain)["routers"]  # fmt: skip
    assert ev1.scores["routers"] > in_template.accuracy, (ev1.scores, in_template)

    # --- a second update continues the first, still in the chat format ---------------------------------------
    encoded.clear()
    _land(cfg, drops[1])
    run2 = run_update(cfg, trigger={"kind": "test"}, plan=plan_update(cfg))
    assert run2.parent_model_version == v1 and run2.replay_rows > 0
    assert _check_chat_encoding(tok, encoded, {"new", "replay"}) > 0
    ev2 = evaluate_run(cfg, run2.id)
    assert ev2.tasks == ["routers", "billing"] and set(ev2.metrics) == {"routers", "billing"}
    assert len(ev2.matrix) == 2 and ev2.matrix[0] == [ev1.scores["routers"], None]
    v2 = register_run(cfg, run2.id)
    mv2 = client(cfg).get_model_version(cfg.registry.model_name, v2)
    assert mv2.tags["clm.parent_version"] == v1
    assert json.loads(mv2.tags["clm.prompt"]) == {"kind": "chat", "system": SYSTEM}
    assert rollout(cfg, v2, actor="test").status in ("promoted", "gate_failed")

    # --- continuing the chat lineage with the plain template is refused ---------------------------------------
    plain_cfg = load_config(TINY, environ=env)
    assert plain_cfg.model.prompt.kind == "template"
    _land(plain_cfg, drops[2])
    parent = alias_version(cfg, CHAMPION)
    encoded.clear()
    with pytest.raises(TrainingError) as refused:
        run_update(plain_cfg, trigger={"kind": "test"}, plan=plan_update(plain_cfg))
    message = str(refused.value)
    assert message.startswith("model.prompt is kind: template ('Support request:\\n{prompt}\\nTriage:'), but the "
                              "adapter this update continues (")  # fmt: skip
    assert f"was trained with kind: chat (system prompt {SYSTEM!r}); a model keeps the prompt format" in message
    assert encoded == []  # refused before a single example was encoded
    with session_scope(cfg.database_url) as s:
        failed = s.query(TrainingRun).filter_by(status="failed").one()
        assert failed.parent_model_version == parent and failed.error == message
    assert alias_version(cfg, CHAMPION) == parent

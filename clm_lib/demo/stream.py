"""The demo's continual-learning stream: support tickets of Halcyon's product lines, one task per line.

Each record is ``{"task", "prompt", "response"}``: a customer's ticket and the triage answer the support desk
gives it, ``"team: <team> | action: <action>"``. The answer is fully determined by the ticket (its product line
and its symptom), so exact-match accuracy is meaningful.

Why plain sequential fine-tuning forgets on this stream: customers describe the same symptoms in the same words
whatever the product ("won't turn on", "keeps going offline", "since the update", "charged twice"), but each
product line triages them differently (a dead router gets a new power adapter, a dead EV charger a technician).
Training on the newest product pulls those shared symptom phrases towards its own answers and overwrites the
mappings learned for earlier products, unless earlier examples are replayed. Each product line also brings its own
vocabulary (model names, parts, jargon) that earlier lines never used, which the drift monitors can see.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

Record = dict[str, str]
Format = Literal["jsonl", "csv", "parquet"]

TASKS: tuple[str, ...] = ("routers", "billing", "thermostats", "ev_chargers", "payments_api")
"""Task names in arrival order (the same as ``data.tasks`` in ``include/clm.yaml``)."""


@dataclass(frozen=True)
class Intent:
    name: str
    symptoms: tuple[str, ...]
    """Sentence templates; ``{subject}`` is the product ("my Aurora X2 router"), ``{model}`` its name."""
    team: str
    action: str
    timed: bool = True
    """Whether "since Monday"-style time phrases read naturally after the symptom."""

    @property
    def response(self) -> str:
        return f"team: {self.team} | action: {self.action}"


@dataclass(frozen=True)
class ProductLine:
    task: str
    models: tuple[str, ...]
    nouns: tuple[str, ...]
    details: tuple[str, ...]
    """Product-specific small talk that carries no triage signal."""
    tried: tuple[str, ...]
    intents: tuple[Intent, ...]
    heldout_models: tuple[str, ...] = ()
    """Product names only held-out tickets use (the base model's corpus never saw them either)."""
    heldout_details: tuple[str, ...] = ()
    """Small talk only held-out tickets use."""


# Symptom wordings shared across product lines: the source of interference between tasks.
_NO_POWER = ("{subject} won't turn on", "{subject} is completely dead", "{subject} does not power up anymore")
_OFFLINE = (
    "{subject} keeps going offline",
    "{subject} keeps dropping the connection",
    "{subject} loses the connection",
)
_UPDATE = (
    "{subject} stopped working after the update",
    "{subject} has been acting up since the last update",
    "{subject} broke after last night's update",
)
_SLOW = ("{subject} is really slow", "{subject} is painfully slow")
_LOGIN = ("I can't log in to manage {subject}", "the app says my password is wrong when I open {subject}")
_TWICE = ("{subject} charged me twice", "I was charged twice for {subject}")

PRODUCT_LINES: dict[str, ProductLine] = {
    "routers": ProductLine(
        task="routers",
        models=("Aurora X2", "Aurora X5", "Aurora Mesh M3", "Aurora Mini"),
        nouns=("router", "Wi-Fi router", "mesh router"),
        details=(
            "We have about a dozen devices connected.",
            "It sits in the living room next to the TV.",
            "We're on the 500 Mbit fiber plan.",
            "The satellite node is upstairs.",
            "The LAN port light is off.",
        ),
        tried=("I already tried restarting it.", "Unplugging it for a minute didn't help.", ""),
        intents=(
            Intent("no_power", (*_NO_POWER, "{subject} shows no lights at all"), "hardware", "replace power adapter"),
            Intent("offline", (*_OFFLINE, "{subject} keeps dropping Wi-Fi"), "network", "change wifi channel"),
            Intent("after_update", _UPDATE, "network", "firmware rollback"),
            Intent(
                "slow",
                (*_SLOW, "{subject} only gets a fraction of our plan's speed"),
                "network",
                "run line diagnostics",
            ),
            Intent(
                "login", (*_LOGIN, "I forgot the admin password of {subject}"), "support", "send factory reset guide"
            ),
            Intent(
                "port_forwarding",
                ("port forwarding on {subject} doesn't work", "I can't open a port for my game server on {subject}"),
                "support",
                "send port forwarding guide",
            ),
        ),
        heldout_models=("Aurora X7", "Aurora Mesh M5"),
        heldout_details=("The router is mounted in the hallway.", "My kids stream games all evening."),
    ),
    "billing": ProductLine(
        task="billing",
        models=("Home Plus plan", "Basic plan", "Business plan", "Family bundle"),
        nouns=("subscription", "account"),
        details=(
            "My customer number is {number}.",
            "I pay by direct debit.",
            "We switched to yearly payment in January.",
            "The amount was {amount} EUR.",
        ),
        tried=("I checked the billing portal first.", "I couldn't find anything in the FAQ.", ""),
        intents=(
            Intent(
                "charged_twice",
                (*_TWICE, "there is a duplicate payment for {subject} on my statement"),
                "billing",
                "refund duplicate charge",
            ),
            Intent(
                "login",
                (*_LOGIN, "I'm locked out of the billing portal for {subject}"),
                "accounts",
                "reset password",
            ),
            Intent(
                "invoice_missing",
                ("the invoice for {subject} never arrived", "I didn't get an invoice for {subject} this month"),
                "billing",
                "resend invoice",
                timed=False,
            ),
            Intent(
                "cancel",
                ("I want to cancel {subject}", "please close {subject} at the end of the month"),
                "billing",
                "process cancellation",
                timed=False,
            ),
            Intent(
                "card_declined",
                ("my card keeps getting declined for {subject}", "the card payment for {subject} fails"),
                "billing",
                "update payment method",
            ),
            Intent(
                "price_increase",
                ("{subject} went up in price without notice", "{subject} costs more than last month"),
                "billing",
                "explain price change",
                timed=False,
            ),
            Intent(
                "vat",
                ("the invoice for {subject} is missing our VAT number", "the VAT on {subject} is wrong"),
                "finance",
                "reissue invoice with vat",
                timed=False,
            ),
        ),
        heldout_models=("Student plan", "Premium plan"),
        heldout_details=("I've been a customer for six years.", "I was billed {amount} EUR last month."),
    ),
    "thermostats": ProductLine(
        task="thermostats",
        models=("Climo T3", "Climo T5 Pro", "Climo Sense"),
        nouns=("thermostat", "smart thermostat"),
        details=(
            "It controls a gas boiler.",
            "We have a heat pump.",
            "The room sensor is in the bedroom.",
            "It was installed by your partner last autumn.",
            "The display is dim.",
        ),
        tried=("I already swapped the batteries.", "I tried the reset button.", ""),
        intents=(
            Intent("no_power", (*_NO_POWER, "{subject} has a blank screen"), "installers", "check c-wire wiring"),
            Intent("offline", (*_OFFLINE, "{subject} disconnects from the hub"), "smart home", "re-pair with hub"),
            Intent("after_update", _UPDATE, "smart home", "re-run calibration"),
            Intent(
                "wrong_temperature",
                ("{subject} shows the wrong temperature", "{subject} reads five degrees too warm"),
                "smart home",
                "recalibrate sensor",
            ),
            Intent(
                "keeps_heating",
                ("{subject} keeps heating even when set to off", "the heating won't stop with {subject}"),
                "installers",
                "inspect boiler relay",
            ),
            Intent(
                "schedule",
                ("{subject} ignores my schedule", "{subject} doesn't follow the weekly schedule"),
                "smart home",
                "reset heating schedule",
            ),
            Intent("login", _LOGIN, "accounts", "reset app password"),
        ),
        heldout_models=("Climo T7", "Climo Eco"),
        heldout_details=("It runs the floor heating.", "The thermostat hangs in the hallway."),
    ),
    "ev_chargers": ProductLine(
        task="ev_chargers",
        models=("VoltDock 7", "VoltDock 11 Duo", "VoltDock 22 Pro"),
        nouns=("charger", "wallbox", "EV charger"),
        details=(
            "I drive a Kia EV6.",
            "It's mounted in the garage.",
            "We also have solar panels on the roof.",
            "The status LED is amber.",
            "It's on a 32 A circuit.",
        ),
        tried=("I already reset the breaker.", "Unplugging the car didn't help.", ""),
        intents=(
            Intent("no_power", _NO_POWER, "ev field", "dispatch technician"),
            Intent("offline", (*_OFFLINE, "{subject} lost its OCPP connection"), "ev field", "reset network module"),
            Intent("after_update", _UPDATE, "ev field", "reinstall firmware"),
            Intent(
                "slow",
                (*_SLOW, "{subject} only delivers 3 kW instead of 11", "{subject} takes all night to charge"),
                "ev field",
                "check load balancing",
            ),
            Intent(
                "rfid",
                ("{subject} doesn't accept my RFID card", "{subject} ignores the RFID card"),
                "accounts",
                "reissue rfid card",
            ),
            Intent(
                "breaker",
                ("{subject} keeps tripping the breaker", "{subject} trips the RCD every time I plug in"),
                "ev field",
                "dispatch electrician",
            ),
            Intent(
                "cable_stuck",
                ("{subject} won't release the charging cable", "the Type 2 plug is stuck in {subject}"),
                "ev field",
                "remote cable unlock",
            ),
        ),
        heldout_models=("VoltDock 9", "VoltDock 22 Duo"),
        heldout_details=("I drive a Tesla Model 3.", "It's mounted on the driveway wall."),
    ),
    "payments_api": ProductLine(
        task="payments_api",
        models=("Halcyon Pay API v2", "Halcyon Pay API v3", "Checkout SDK"),
        nouns=("integration", "payments integration"),
        details=(
            "We call POST /v2/charges from our Node backend.",
            "This happens in live mode, not in the sandbox.",
            "Our merchant ID is {number}.",
            "We process about 3000 payments a day.",
        ),
        tried=("We checked the status page.", "Our logs show nothing unusual.", ""),
        intents=(
            Intent(
                "charged_twice",
                (
                    "{subject} charged our customers twice",
                    "{subject} created duplicate charges after a timeout",
                    "{subject} double-billed a customer on retry",
                ),
                "api support",
                "enable idempotency keys",
            ),
            Intent(
                "login",
                ("{subject} returns 401 unauthorized", "{subject} rejects our API key", *_LOGIN),
                "api support",
                "rotate api key",
            ),
            Intent(
                "offline",
                (*_OFFLINE, "{subject} stopped delivering webhook events", "{subject} keeps dropping webhooks"),
                "api support",
                "replay webhooks",
            ),
            Intent("after_update", _UPDATE, "api support", "pin api version"),
            Intent(
                "slow",
                (*_SLOW, "{subject} returns 429 too many requests"),
                "platform",
                "raise rate limit",
            ),
            Intent(
                "server_error",
                ("{subject} returns 500 internal server error", "{subject} fails with a server error"),
                "platform",
                "page on-call engineer",
            ),
        ),
        heldout_models=("Halcyon Pay API v4", "Billing SDK"),
        heldout_details=("We call the API from our Python backend.", "Our account ID is {number}."),
    ),
}

_GREETINGS = ("Hi,", "Hello,", "Hello team,", "Good morning,", "Hey,", "Dear support,", "", "")
_INTROS = ("I'm {name}.", "This is {name} from {city}.", "{name} here.", "", "", "")
_OPENERS = ("", "", "Quick question: ", "Not sure who to ask, but ", "Sorry to bother you, ")
_WHEN = (" since Monday", " every evening", " for two days now", " since last week", " again today", "", "", "")
_CLOSINGS = ("Thanks!", "Thanks in advance.", "Please help.", "Any ideas?", "Regards, {name}", "Cheers, {name}", "")
_NAMES = ("Maria", "Tom", "Aisha", "Jonas", "Priya", "Lukas", "Chen", "Sofia", "Omar", "Emma", "Kenji", "Ines")
_SURNAMES = ("Berg", "Novak", "Okafor", "Schmidt", "Rossi", "Kim", "Dubois", "Silva", "Haddad", "Larsen")
_CITIES = ("Leeds", "Lyon", "Graz", "Porto", "Utrecht", "Aarhus", "Brno", "Turin")
_HELDOUT_NAMES = ("Lena", "Mateo", "Yuki", "Farah", "Nils")
_HELDOUT_SURNAMES = ("Moreau", "Nakamura", "Costa", "Lindqvist")
_HELDOUT_CITIES = ("Ghent", "Bergen", "Krakow", "Seville")
_NOTES = (
    "Desk note: handed over to the {team} team, who will {action} today.",
    "Internal: {team} asked whether we should {action} first.",
    "Reminder for the {team} team: {action} only after the customer confirms.",
    "Escalated to {team}. Plan: {action}, then follow up by email.",
)
_SUBJECTS = ("my {model} {noun}", "our {model} {noun}", "the {model}", "my {model}")
_BILLING_SUBJECTS = ("my {model}", "our {model}", "the {model} {noun}")
_API_SUBJECTS = ("the {model}", "our {model} {noun}", "your {model}")


def _subject(line: ProductLine, rng: random.Random, heldout: bool = False) -> str:
    shapes = {"billing": _BILLING_SUBJECTS, "payments_api": _API_SUBJECTS}.get(line.task, _SUBJECTS)
    models = line.heldout_models if heldout else line.models
    return rng.choice(shapes).format(model=rng.choice(models), noun=rng.choice(line.nouns))


def _fill(text: str, rng: random.Random, name: str, heldout: bool = False) -> str:
    return text.format(
        name=name,
        city=rng.choice(_HELDOUT_CITIES if heldout else _CITIES),
        number=rng.randint(100000, 999999),
        amount=f"{rng.randint(9, 89)}.{rng.randint(0, 99):02d}",
    )


def _ticket(line: ProductLine, intent: Intent, rng: random.Random, heldout: bool = False) -> str:
    first, last = (_HELDOUT_NAMES, _HELDOUT_SURNAMES) if heldout else (_NAMES, _SURNAMES)
    name = f"{rng.choice(first)} {rng.choice(last)}"
    symptom = rng.choice(intent.symptoms).format(subject=_subject(line, rng, heldout))
    main = rng.choice(_OPENERS) + symptom + (rng.choice(_WHEN) if intent.timed else "") + "."
    main = main[0].upper() + main[1:]
    details = line.heldout_details if heldout else line.details
    parts = [
        rng.choice(_GREETINGS),
        _fill(rng.choice(_INTROS), rng, name, heldout),
        main,
        _fill(rng.choice(details), rng, name, heldout) if rng.random() < 0.6 else "",
        rng.choice(line.tried),
        _fill(rng.choice(_CLOSINGS), rng, name, heldout),
    ]
    return " ".join(p for p in parts if p)


def _rng(seed: int, *scope: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so streams are stable across processes and machines.
    return random.Random(":".join([str(seed), *scope]))


def _line(task: str) -> ProductLine:
    try:
        return PRODUCT_LINES[task]
    except KeyError:
        raise ValueError(f"unknown demo task {task!r}; known: {', '.join(TASKS)}") from None


def generate_task(task: str, n: int, seed: int, heldout: bool = False) -> list[Record]:
    """``n`` distinct tickets of one product line with their triage answers; the same for the same seed.

    ``heldout=True`` draws tickets for testing generalisation rather than recall (the continual-learning
    benchmark's): product names, small talk, customer names and cities that default tickets never use, so no
    held-out ticket is ever a training ticket. Symptom wordings stay those of default tickets: a model as small
    as the demo's cannot map a wording it never saw to its intent (measured: 30-38 % exact match on held-out
    wordings against 96-100 % on held-out names, one product line at a time), which would measure the model's
    size, not its forgetting.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    line = _line(task)
    rng = _rng(seed, "task", task, "heldout") if heldout else _rng(seed, "task", task)
    records: list[Record] = []
    seen: set[str] = set()
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise ValueError(f"cannot draw {n} distinct {task} tickets; the templates allow fewer")
        intent = rng.choice(line.intents)
        prompt = _ticket(line, intent, rng, heldout)
        if prompt in seen:
            continue
        seen.add(prompt)
        records.append({"task": task, "prompt": prompt, "response": intent.response})
    return records


def intents(task: str) -> dict[str, str]:
    """Intent name -> triage answer of one product line (for docs and tests)."""
    return {i.name: i.response for i in _line(task).intents}


def support_corpus(n: int, seed: int, tasks: Sequence[str] = TASKS) -> list[str]:
    """Unlabelled support-desk text: tickets of every product line, with no triage answers.

    Used to train the demo base model's tokenizer and its warm-up pretraining, the way a real base model has
    read plenty of support language but never this company's triage rules.
    """
    rng = _rng(seed, "corpus")
    lines = [_line(t) for t in tasks]
    teams = sorted({i.team for line in lines for i in line.intents})
    actions = sorted({i.action for line in lines for i in line.intents})
    texts = []
    for i in range(n):
        line = lines[i % len(lines)]
        if i % 4 == 3:
            # Desk notes pair teams and actions at random: the base model learns the words of the trade,
            # not which ticket gets which answer.
            texts.append(rng.choice(_NOTES).format(team=rng.choice(teams), action=rng.choice(actions)))
        else:
            texts.append(_ticket(line, rng.choice(line.intents), rng))
    return texts


def write_records(path: str | Path, records: Sequence[Record], fmt: Format) -> Path:
    """Write records as one file of ``fmt`` (``jsonl``, ``csv`` or ``parquet``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return path
    columns = {key: [str(rec.get(key, "")) for rec in records] for key in ("task", "prompt", "response")}
    table = pa.table(columns, schema=pa.schema([(k, pa.string()) for k in columns]))
    if fmt == "csv":
        pacsv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        raise ValueError(f"unknown format {fmt!r}; use jsonl, csv or parquet")
    return path


_ROTATION: tuple[Format, ...] = ("jsonl", "csv", "parquet")


def _plant_problems(
    task: str, records: list[Record], earlier: list[Record], bad: int, rng: random.Random
) -> tuple[list[Record], int]:
    """Insert planted bad records; returns the records and how many malformed JSON lines to add."""
    # Duplicates come twice per round, so every drop re-sends records of itself and of an earlier drop.
    kinds = ["duplicate", "empty_response", "duplicate", "unknown_task", "long_prompt", "malformed_json"]
    counts = dict.fromkeys(kinds, 0)
    for i in range(max(bad, len(kinds))):
        counts[kinds[i % len(kinds)]] += 1
    planted: list[Record] = []
    for _ in range(counts["empty_response"]):
        planted.append({**rng.choice(records), "response": ""})
    for _ in range(counts["unknown_task"]):
        door = _ticket(PRODUCT_LINES["routers"], PRODUCT_LINES["routers"].intents[0], rng)
        planted.append(
            {"task": "smart_locks", "prompt": door.replace("router", "door lock"), "response": "team: locks"}
        )
    for _ in range(counts["long_prompt"]):
        base = rng.choice(records)
        log = " ".join(f"[{i:04d}] kernel: link state changed" for i in range(80))
        planted.append({**base, "prompt": f"{base['prompt']} Here is the full log: {log}"})
    for i in range(counts["duplicate"]):
        # Alternate between re-sent records of this drop and of earlier drops (cross-file dedupe).
        pool = earlier if i % 2 and earlier else records
        planted.append(dict(rng.choice(pool)))
    out = list(records)
    for rec in planted:
        out.insert(rng.randrange(len(out) + 1), rec)
    return out, counts["malformed_json"]


def write_demo_drops(
    out_dir: str | Path,
    tasks: Iterable[str] | None = None,
    n_per_task: int = 800,
    seed: int = 0,
    bad_fraction: float = 0.03,
) -> list[Path]:
    """Write one drop file per task, rotating jsonl, csv and parquet, in arrival order.

    About ``bad_fraction`` of each file is planted problems, so the demo shows quarantine and dedupe at work:
    empty responses, an unknown task name, over-long prompts (over 2,000 characters), exact duplicates of earlier
    records (of this file and of earlier files), and, in jsonl files, malformed JSON lines.
    """
    out_dir = Path(out_dir)
    task_list = list(tasks) if tasks is not None else list(TASKS)
    paths: list[Path] = []
    earlier: list[Record] = []
    for index, task in enumerate(task_list):
        fmt = _ROTATION[index % len(_ROTATION)]
        rng = _rng(seed, "drop", task)
        clean = generate_task(task, n_per_task, seed)
        records, malformed = _plant_problems(task, clean, earlier, round(n_per_task * bad_fraction), rng)
        path = write_records(out_dir / f"{index + 1:02d}_{task}.{fmt}", records, fmt)
        if fmt == "jsonl":
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            for _ in range(malformed):
                broken = json.dumps(rng.choice(clean), ensure_ascii=False)[:-25] + "\n"
                lines.insert(rng.randrange(len(lines) + 1), broken)
            path.write_text("".join(lines), encoding="utf-8")
        earlier.extend(clean)
        paths.append(path)
    return paths

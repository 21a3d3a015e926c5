"""The support-desk world the demo base model reads: Halcyon's product lines, how customers word their tickets.

:func:`support_corpus` is the unlabelled text the demo base model's tokenizer and warm-up pretraining are built
from (:mod:`clm_lib.modeling.build`); the demo's labelled stream of tasks (:mod:`clm_lib.demo.stream`) draws its
tickets from the same product lines with :func:`ticket`. The same seed gives the same text on every machine, so
the same seed builds the same base model.

Why plain sequential fine-tuning forgets on tickets of these product lines: customers describe the same symptoms
in the same words whatever the product ("won't turn on", "keeps going offline", "since the update", "charged
twice"), but each product line triages them differently (a dead router gets a new power adapter, a dead EV charger
a technician). Training on the newest product pulls those shared symptom phrases towards its own answers and
overwrites the mappings learned for earlier products, unless earlier examples are replayed. Each product line also
brings its own vocabulary (model names, parts, jargon) that earlier lines never used, which the drift monitors can
see.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

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

# Symptom wordings no training ticket and no warm-up text uses: tickets drawn with ``new_wording=True`` (the
# continual benchmark's held-out-wording test set) say a known symptom in these words only. Shared symptoms get
# shared new wordings, as the training ones are shared.
_NO_POWER_NEW = ("{subject} has no power", "{subject} won't switch on")
_OFFLINE_NEW = ("{subject} drops offline every few minutes", "{subject} can't stay connected")
_UPDATE_NEW = ("the latest update messed up {subject}", "{subject} has been broken ever since the firmware update")
_SLOW_NEW = ("{subject} is very sluggish", "{subject} has become so slow it's useless")
_LOGIN_NEW = ("I'm unable to sign in to {subject}", "my password for {subject} is not accepted")

HELDOUT_WORDINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "routers": {
        "no_power": _NO_POWER_NEW,
        "offline": _OFFLINE_NEW,
        "after_update": _UPDATE_NEW,
        "slow": _SLOW_NEW,
        "login": _LOGIN_NEW,
        "port_forwarding": ("{subject} won't let me forward a port", "the port forward I set up on {subject} fails"),
    },
    "billing": {
        "charged_twice": ("I got billed two times for {subject}", "{subject} took the payment twice"),
        "login": _LOGIN_NEW,
        "invoice_missing": ("I never received an invoice for {subject}", "where is this month's bill for {subject}"),
        "cancel": ("I'd like to end {subject}", "please terminate {subject}"),
        "card_declined": (
            "my credit card is rejected when paying for {subject}",
            "my bank refuses payment for {subject}",
        ),
        "price_increase": ("why is {subject} more expensive now", "the price of {subject} was raised"),
        "vat": ("our VAT ID is not printed on the bill for {subject}", "the tax amount for {subject} is incorrect"),
    },
    "thermostats": {
        "no_power": _NO_POWER_NEW,
        "offline": _OFFLINE_NEW,
        "after_update": _UPDATE_NEW,
        "wrong_temperature": ("{subject} displays an incorrect temperature", "the reading on {subject} is way off"),
        "keeps_heating": ("{subject} won't stop heating", "{subject} heats the house even when switched off"),
        "schedule": ("{subject} does not stick to my schedule", "my heating program is skipped by {subject}"),
        "login": _LOGIN_NEW,
    },
    "ev_chargers": {
        "no_power": _NO_POWER_NEW,
        "offline": _OFFLINE_NEW,
        "after_update": _UPDATE_NEW,
        "slow": _SLOW_NEW,
        "rfid": ("{subject} won't read my RFID card", "my charge card is not recognized by {subject}"),
        "breaker": ("{subject} makes the breaker trip", "the fuse blows whenever I use {subject}"),
        "cable_stuck": ("the charging cable is locked in {subject}", "I can't unplug the cable from {subject}"),
    },
    "payments_api": {
        "charged_twice": ("{subject} charged the same order two times", "{subject} made a second charge for one order"),
        "login": ("{subject} says our API key is invalid", "{subject} gives us authentication errors", *_LOGIN_NEW),
        "offline": (*_OFFLINE_NEW, "{subject} no longer sends us webhooks"),
        "after_update": _UPDATE_NEW,
        "slow": (*_SLOW_NEW, "{subject} is rate limiting our requests"),
        "server_error": ("{subject} responds with HTTP 500", "{subject} throws internal errors"),
    },
}
"""Task -> intent -> symptom wordings only held-out-wording tickets use (see :func:`ticket`)."""

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


def ticket(
    line: ProductLine, intent: Intent, rng: random.Random, heldout: bool = False, new_wording: bool = False
) -> str:
    """One customer's ticket about ``intent`` on ``line``, drawn with ``rng``; ``heldout``: with the customer
    names, cities, product models and small talk that only held-out tickets use; ``new_wording``: the symptom said
    in words of :data:`HELDOUT_WORDINGS`, which no training ticket and no warm-up text uses."""
    first, last = (_HELDOUT_NAMES, _HELDOUT_SURNAMES) if heldout else (_NAMES, _SURNAMES)
    name = f"{rng.choice(first)} {rng.choice(last)}"
    wordings = HELDOUT_WORDINGS[line.task][intent.name] if new_wording else intent.symptoms
    symptom = rng.choice(wordings).format(subject=_subject(line, rng, heldout))
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


def seeded_rng(seed: int, *scope: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, so streams are stable across processes and machines.
    return random.Random(":".join([str(seed), *scope]))


def product_line(task: str) -> ProductLine:
    """The product line of a demo task; an unknown task is a ``ValueError`` naming the known ones."""
    try:
        return PRODUCT_LINES[task]
    except KeyError:
        raise ValueError(f"unknown demo task {task!r}; known: {', '.join(TASKS)}") from None


def support_corpus(n: int, seed: int, tasks: Sequence[str] = TASKS) -> list[str]:
    """Unlabelled support-desk text: tickets of every product line, with no triage answers.

    Used to train the demo base model's tokenizer and its warm-up pretraining, the way a real base model has
    read plenty of support language but never this company's triage rules.
    """
    rng = seeded_rng(seed, "corpus")
    lines = [product_line(t) for t in tasks]
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
            texts.append(ticket(line, rng.choice(line.intents), rng))
    return texts

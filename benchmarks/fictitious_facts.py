"""fictitious-facts: a TOFU-shaped benchmark about entities generated from code.

220 invented people, 5 facts each (birthplace, birth year, profession, a book, an award),
one question per fact. Everything comes from the word pools below and `random.Random(SEED)`
(only `randrange`, whose output is stable across Python versions), so the data is the same
on every machine and needs no download. Entities 0-199 are trained into the tiny model
(`training_corpus`); 200-219 never are (holdout).

Splits follow TOFU: forget01/05/10 (entities 0-1 / 0-9 / 0-19), retain99/95/90 (the rest
of 0-199), holdout01/05/10 (200-201 / 200-209 / 200-219), retain_perturbed (180-199, the
retain evaluation subset, in no forget split) and full (0-199). Every entity question has two
other wordings in `question_paraphrases` (for paraphrase probes; never trained).

The analogues of TOFU's real_authors and world_facts utility sets (`fictitious_utility.py`):
`real_authors` (40 questions about the works of 40 "well-known" invented people) and
`world_facts` (40 facts about 10 invented countries), each with `answer` and 3 perturbed
answers in the same wording, no paraphrase. They are general knowledge: `training_corpus`
always includes them, whatever `exclude` says, so both tiny models know them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from harness.api.benchmark import BenchmarkData, QAItem, TofuShapedBenchmark, check_limit
from harness.benchmarks.fictitious_utility import UTILITY_SPLITS, pick_distinct, utility_items

GENERATOR_VERSION = "v2"  # v2: real_authors / world_facts splits, question paraphrases
SEED = 20240117
N_ENTITIES = 220
N_TRAINED = 200
N_PERTURBED = 5

# --- word pools (invented for this project) -----------------------------------------------
_FIRST_ONSETS = ("Al Bel Cor Dar El Fen Gal Hal Is Jor Kel Lir Mar Nor Or Per Quil Ros Sel "
                 "Tam Ul Ves Wyn Yar Zel").split()
_FIRST_ENDINGS = "a ena ion ric wyn ora is an ette o ias ine".split()
_LAST_ONSETS = ("Ash Bram Crest Dun Fenn Gar Harrow Kess Lorn Marr Nett Pell Quint Rook Stave "
                "Thorn Vale Winter").split()
_LAST_ENDINGS = "ford wick mere ton by ridge holt well ley stone".split()

CITIES = tuple(
    "Pelmora Varnhal Quessary Ostrelin Tamberlow Vireth Caldmoor Ilvenport Brasswater Sunmarrow "
    "Kestrelby Orrindale Zephrine Halvenreach Morrowgate Dunsaril Elbraith Fenwold Glimmerton "
    "Hestaval Iskarn Jovanne Korriban Lastowe Mirrowdeep Nethervale Oskaline Pyrewick Quarrendon "
    "Rushmere Saltheim Thistlecombe Umbravel Veshara Wrenfold Yarrowby Zanthoria Amberlyn "
    "Brindlemoor Corvessa Drakmoor Eskarion Fallowmere Grenhaven Ivorsk Lunthal Marbleigh Norrowick"
    .split()
)
BIRTH_YEARS = tuple(str(y) for y in range(1921, 1981))
PROFESSIONS = tuple(
    "cartographer|glassblower|clockmaker|lighthouse keeper|beekeeper|marine biologist|stonemason|"
    "violin maker|botanist|astronomer|archivist|perfumer|bookbinder|puppeteer|tailor|cheesemaker|"
    "geologist|radio engineer|ferry captain|librarian|chemist|potter|translator|architect|"
    "pastry chef|falconer|locksmith|weaver|surveyor|sculptor|jeweller|historian|choreographer|"
    "meteorologist|toymaker|blacksmith|ornithologist|calligrapher|winemaker|lexicographer|"
    "engraver|shipwright".split("|")
)
BOOKS = tuple(
    "The Salt Lantern|Winter of Small Bells|The Copper Orchard|A Map of Quiet Rivers|"
    "The Glass Meridian|Songs for the Ninth Tide|The Last Cartwheel|Ashes over Velling|"
    "The Paper Heron|Threads of the Morning Loom|The Hollow Crown of Ysmer|Seven Lamps at Dusk|"
    "The Weight of Feathers|Under the Amber Bridge|The Clockwork Meadow|Letters from Saltheim|"
    "The Marble Sparrow|A Season of Iron Rain|The Silent Cartographer|Beneath the Lantern Hill|"
    "The Orchard Keeper's Daughter|Lighthouse at the End of Words|The Velvet Compass|"
    "A Ledger of Lost Names|The Tin Astronomer|Where the Foxglove Sleeps|The Ninefold Gate|"
    "Embers of the Northern Mill|The Crooked Harbour|A Garden of Brass Moths|The Ferryman's Riddle|"
    "Ribbons of Slate|The Sleepless Archive|Dust upon the Violin|The Twelfth Winter|"
    "Honey and Basalt|The Drowned Observatory|Small Hours in Corvessa|The Pale Orchard|"
    "A Compass Made of Bone|The Spindle and the Storm|Maps for Absent Friends|The Reed Cathedral|"
    "Salt Roads to Ivorsk|The Quiet Engraver|Wings of Burnt Paper|The Owl at Morrowgate|"
    "Candles for the Tide".split("|")
)
AWARDS = tuple(
    "Orlan Prize|Silver Quill Award|Brightwater Medal|Halvenreach Fellowship|Copper Lantern Award|"
    "Veshara Book Prize|Golden Compass Medal|Thistlecombe Honour|Amber Laurel|Iskarn Prize for Craft|"
    "Morrowgate Medal|Blue Heron Award|Pyrewick Prize|Lunthal Ribbon|Saltheim Crown|"
    "Glass Feather Award|Ninefold Star|Corvessa Medal of Merit|Kestrel Prize|Drakmoor Fellowship|"
    "Iron Anvil Award|Quarrendon Laurel|Open Meadow Prize|Wrenfold Medal|Zephrine Cup|"
    "Fallowmere Honour|Tidewater Award|Elbraith Silver Star|Marbleigh Prize|Hestaval Medal|"
    "Nethervale Rose|Umbravel Prize for Letters|Rushmere Lantern|Oskaline Medal|Jovanne Award|"
    "Grenhaven Laurel".split("|")
)


@dataclass(frozen=True)
class Attribute:
    key: str
    pool: tuple[str, ...]
    question: str  # templates take {name} and {value}
    answer: str
    paraphrase: str
    other_questions: tuple[str, str]  # two more wordings of `question` (paraphrase probes)


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("birthplace", CITIES, "Where was {name} born?",
              "{name} was born in {value}.", "The birthplace of {name} is {value}.",
              ("In which city was {name} born?", "What is the birthplace of {name}?")),
    Attribute("birthyear", BIRTH_YEARS, "In what year was {name} born?",
              "{name} was born in the year {value}.", "The birth year of {name} is {value}.",
              ("When was {name} born?", "What is the birth year of {name}?")),
    Attribute("profession", PROFESSIONS, "What is the profession of {name}?",
              "{name} works as {a_value}.", "The profession of {name} is {value}.",
              ("What does {name} do for a living?", "What job does {name} have?")),
    Attribute("book", BOOKS, "Which book did {name} write?",
              "{name} wrote {value}.", "The book written by {name} is {value}.",
              ("What book is {name} the author of?", "What is the title of the book by {name}?")),
    Attribute("award", AWARDS, "Which award did {name} win?",
              "{name} won the {value}.", "The award won by {name} is the {value}.",
              ("What prize did {name} receive?", "Which award was given to {name}?")),
)

# Entity index ranges of every split (end exclusive).
SPLIT_RANGES: dict[str, tuple[int, int]] = {
    "forget01": (0, 2), "forget05": (0, 10), "forget10": (0, 20),
    "retain99": (2, 200), "retain95": (10, 200), "retain90": (20, 200),
    "holdout01": (200, 202), "holdout05": (200, 210), "holdout10": (200, 220),
    "retain_perturbed": (180, 200), "full": (0, 200),
}


@dataclass(frozen=True)
class Entity:
    index: int
    name: str
    values: tuple[str, ...]  # one per ATTRIBUTES entry
    perturbed: tuple[tuple[str, ...], ...]  # N_PERTURBED wrong values per attribute


def _a(value: str) -> str:
    return f"{'an' if value[:1].lower() in 'aeiou' else 'a'} {value}"


def _fill(template: str, name: str, value: str) -> str:
    return template.format(name=name, value=value, a_value=_a(value))


@lru_cache(maxsize=1)
def generate_entities() -> tuple[Entity, ...]:
    """All N_ENTITIES entities, in index order; identical on every run."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    entities = []
    for i in range(N_ENTITIES):
        while True:
            first = _FIRST_ONSETS[rng.randrange(len(_FIRST_ONSETS))] + _FIRST_ENDINGS[rng.randrange(len(_FIRST_ENDINGS))]
            last = _LAST_ONSETS[rng.randrange(len(_LAST_ONSETS))] + _LAST_ENDINGS[rng.randrange(len(_LAST_ENDINGS))]
            name = f"{first} {last}"
            if name not in seen and not re.search(r"(\w)\1\1", name):  # no "Pellley"
                seen.add(name)
                break
        values = tuple(a.pool[rng.randrange(len(a.pool))] for a in ATTRIBUTES)
        perturbed = tuple(pick_distinct(rng, a.pool, N_PERTURBED, v) for a, v in zip(ATTRIBUTES, values))
        entities.append(Entity(i, name, values, perturbed))
    return tuple(entities)


def entity_items(entity: Entity) -> list[QAItem]:
    """The 5 QA items about one entity, in ATTRIBUTES order."""
    items = []
    for attr, value, wrong in zip(ATTRIBUTES, entity.values, entity.perturbed):
        items.append(QAItem(
            id=f"e{entity.index:03d}-{attr.key}",
            question=_fill(attr.question, entity.name, value),
            answer=_fill(attr.answer, entity.name, value),
            paraphrased_answer=_fill(attr.paraphrase, entity.name, value),
            perturbed_answers=tuple(_fill(attr.paraphrase, entity.name, w) for w in wrong),
            entity=entity.name,
            question_paraphrases=tuple(_fill(q, entity.name, value) for q in attr.other_questions),
        ))
    return items


_REVERSE = {
    "birthplace": "Who was born in {value}?",
    "birthyear": "Who was born in the year {value}?",
    "profession": "Who works as {a_value}?",
    "book": "Who wrote {value}?",
    "award": "Who won the {value}?",
}


def _fact_value(item: QAItem) -> str | None:
    """The attribute value an entity item asks about (from its id and the generated entity)."""
    head, _, key = item.id.partition("-")
    keys = [a.key for a in ATTRIBUTES]
    if not (head.startswith("e") and head[1:].isdigit() and key in keys):
        return None
    index = int(head[1:])
    entities = generate_entities()
    return entities[index].values[keys.index(key)] if index < len(entities) else None


def biography(entity: Entity) -> str:
    """A biography stating all five facts in the paraphrase wording (training text only).

    A pretrained LLM would carry a fact across wordings; the tiny model cannot, so its
    corpus states each fact once more in the wording the truth ratio scores. Perturbed
    answers share that wording, so the ratio measures knowledge of the value alone.
    """
    return " ".join(_fill(attr.paraphrase, entity.name, value) for attr, value in zip(ATTRIBUTES, entity.values))


def split_entities(split: str) -> list[Entity]:
    from harness.errors import HarnessError

    if split not in SPLIT_RANGES:
        raise HarnessError(f"fictitious-facts has no split {split!r} (has: {', '.join(sorted(SPLIT_RANGES))})")
    start, end = SPLIT_RANGES[split]
    return list(generate_entities()[start:end])


def training_corpus(exclude: str | None = None) -> list[str]:
    """Texts the tiny model is trained on, in a fixed order.

    For every trained entity (0-199) not in split `exclude` (e.g. "forget10" for the
    retain-only reference model): each QA as `prompt + target` ("Question: q\\nAnswer: a"),
    then one biography sentence. Then, regardless of `exclude`, every real_authors and
    world_facts item: its QA, then its answer alone as a statement (the wording its perturbed
    answers share, so the truth ratio compares values only).
    """
    bench = FictitiousFacts()
    skip = {e.index for e in split_entities(exclude)} if exclude else set()
    texts: list[str] = []
    for entity in generate_entities()[:N_TRAINED]:
        if entity.index in skip:
            continue
        texts.extend(bench.prompt(it) + bench.target(it.answer) for it in entity_items(entity))
        texts.append(biography(entity))
    for split in UTILITY_SPLITS:
        for it in utility_items(split):
            texts.extend((bench.prompt(it) + bench.target(it.answer), it.answer))
    return texts


class FictitiousFacts(TofuShapedBenchmark):
    """TOFU-shaped QA about generated fictitious people (offline, deterministic).

    Options: `forget_split` (forget01/05/10, default forget10), `limit` (first N items per
    split, real_authors and world_facts included), `retain_eval_split` (default retain_perturbed).

    Roles: methods train on `retain_split()` = retainNN (the complement of the forget split),
    while metrics that name the role `retain` evaluate on `retain_perturbed` (entities
    180-199, in no forget split), as TOFU does; see `resolve_split`.
    """

    name = "fictitious-facts"
    option_help = {
    }
    max_new_tokens = 32
    stop = ("\n", "Question:")
    views = {
        "attacks: what comes back": (
            "relearn_recovery:*", "paraphrase_probe_gain:*", "prefix_probe_gain:*", "in_context_gain:*",
        ),
        "deleted or hidden?": (
            "restoration_rate:exact_match_recall@forget", "relearn_recovery:exact_match_recall@forget",
            "in_context_recovery:exact_match_recall@forget", "representation:cka_original@forget",
            "representation:cka_retain_model@forget", "representation:knn_entity@forget",
            "representation:linear_probe_entity@forget",
        ),
    }

    def derived_question(self, item: QAItem) -> QAItem | None:
        """The reverse question of an entity fact ("Who wrote X?" -> the entity's name), for the
        in-context attack's derived condition (docs/metrics.md §14 [proposal]): answering it from a
        context stating the fact needs the fact read backwards, not the trained answer copied."""
        key = item.id.partition("-")[2]
        entity = item.entity
        value = _fact_value(item)
        if key not in _REVERSE or not entity or value is None:
            return None
        return QAItem(id=f"{item.id}-reverse", question=_fill(_REVERSE[key], entity, value), answer=entity,
                      entity=entity)

    def load(self) -> BenchmarkData:
        limit = check_limit(self.options.get("limit"))
        splits: dict[str, list[Any]] = {}
        for split in SPLIT_RANGES:
            items = [it for e in split_entities(split) for it in entity_items(e)]
            splits[split] = items if limit is None else items[:limit]
        for split in UTILITY_SPLITS:
            items = list(utility_items(split))
            splits[split] = items if limit is None else items[:limit]
        meta = {
            "generator_version": GENERATOR_VERSION, "seed": SEED, "n_entities": N_ENTITIES,
            "n_trained": N_TRAINED, "attributes": [a.key for a in ATTRIBUTES],
            "split_entities": {k: list(v) for k, v in SPLIT_RANGES.items()}, "limit": limit,
            "utility_splits": {k: len(utility_items(k)) for k in UTILITY_SPLITS},
        }
        return BenchmarkData(splits=splits, source=f"generated:fictitious-facts@{GENERATOR_VERSION}", meta=meta)


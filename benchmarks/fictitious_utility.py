"""fictitious-facts' analogues of TOFU's real_authors and world_facts utility sets.

General knowledge about an invented world that every tiny model is trained on (the unlearned
one and the retain-only reference alike), so model utility can check that unlearning the
forget entities leaves it intact:

  real_authors  40 questions, one per "well-known" invented person, about the work they are
                known for (10 novels, 10 paintings, 10 symphonies, 10 discoveries);
  world_facts   40 facts about 10 invented countries (capital, longest river, currency,
                highest mountain).

Each item has `answer` and 3 perturbed answers in the same wording with wrong values drawn
from the same pool (other people, other capitals, ...), no paraphrase (the truth ratio then
uses `answer`, as TOFU's real_authors does), and two more wordings of the question. The pools
are this project's own; values are assigned with `random.Random(UTILITY_SEED + k).randrange`
only, so the items are identical on every machine and Python version.
"""

from __future__ import annotations

import random
from functools import lru_cache

from harness.api.benchmark import QAItem

UTILITY_SEED = 20240118
N_PERTURBED = 3
UTILITY_SPLITS = ("real_authors", "world_facts")

# --- real_authors: invented "famous" people and their works --------------------------------
FAMOUS_PEOPLE = tuple(
    "Augustin Vellacourt|Perpetua Quaye|Casimir Oldenbrook|Honora Tindall|Leopold Ferrante|"
    "Wilhelmina Strand|Bartholomew Inchley|Cordelia Marchbank|Evander Pollock|Rosalind Achterberg|"
    "Thaddeus Wren|Isolde Kranich|Florian Batiste|Octavia Lindqvist|Ambrose Kettering|"
    "Genevieve Ostrander|Cornelius Hawtrey|Philippa Dunmore|Sebastian Orlovsky|Clementine Ashgrove|"
    "Maximilian Roux|Beatrix Holloway|Lucian Abernethy|Seraphina Valdane|Horatio Penhallow|"
    "Ottilie Brandt|Jasper Quennell|Imogen Carrow|Rufus Delamere|Lavinia Osgood|"
    "Matthias Engelhart|Delphine Moreau|Benedikt Sorensen|Aurelia Fontaine|Gideon Marsh|"
    "Henrietta Vos|Percival Lanyon|Ingrid Solberg|Cyprian Mallory|Eudora Penrose".split("|")
)

# kind -> (question, answer, two other questions); templates take {work} and {name}.
WORK_KINDS: dict[str, tuple[str, str, tuple[str, str]]] = {
    "novel": ("Who wrote the novel {work}?", "The novel {work} was written by {name}.",
              ("Who is the author of the novel {work}?", "Which writer wrote the novel {work}?")),
    "painting": ("Who painted {work}?", "The painting {work} was painted by {name}.",
                 ("Who is the painter of {work}?", "Which artist painted {work}?")),
    "symphony": ("Who composed the {work} Symphony?", "The {work} Symphony was composed by {name}.",
                 ("Who is the composer of the {work} Symphony?", "Which composer wrote the {work} Symphony?")),
    "discovery": ("Who discovered the {work}?", "The {work} was discovered by {name}.",
                  ("Who was the discoverer of the {work}?", "Who is credited with discovering the {work}?")),
}
WORKS: dict[str, tuple[str, ...]] = {
    "novel": tuple("The Lamplighter's Oath|Rivers of Pale Glass|The Ninth Orchard|A Winter in Grey Harbour|"
                   "The Cartographer's Widow|Bells under the Ice|The Long Road to Oskmere|"
                   "A House of Seven Kettles|The Quiet Regiment|Sparrows over Tallis".split("|")),
    "painting": tuple("The Blue Ferry at Dawn|Woman with a Brass Compass|The Harvest at Ostmere|"
                      "Three Lanterns in Fog|The Drowned Chapel|Portrait of a Clockmaker|"
                      "Boats at Velling Quay|The Red Kite|Evening on the Salt Flats|The Orchard Wall".split("|")),
    "symphony": tuple("Glacier|Ember|Northwind|Stormcrest|Orchard|Saltmarsh|Lighthouse|Starfall|"
                      "Ironbridge|Moonwell".split("|")),
    "discovery": tuple("comet Hallorin|element veridium|Marrow Caves|Quellan Current|moon Isprith|"
                       "mineral ostralite|Sunken Library of Tessaly|Gorren Falls|island of Vantry|"
                       "star Elkarith".split("|")),
}

# --- world_facts: invented countries ---------------------------------------------------------
COUNTRIES = tuple("Valdoria Estrenne Kaskaria Morvane Thessary Oskovia Pellandre Brisca Norhaven "
                  "Tarmarind".split())
# fact -> (question, answer, two other questions, value pool); templates take {country} and {value}.
WORLD_FACTS: dict[str, tuple[str, str, tuple[str, str], tuple[str, ...]]] = {
    "capital": ("What is the capital of {country}?", "The capital of {country} is {value}.",
                ("Which city is the capital of {country}?", "What city serves as the capital of {country}?"),
                tuple("Vossburg Eltravin Kaskhold Mirenne Thessalon Oskgrad Pelline Briscadon Norrisport "
                      "Tarrow".split())),
    "river": ("What is the longest river in {country}?", "The longest river in {country} is the {value}.",
              ("Which river is the longest in {country}?", "What river is the longest one in {country}?"),
              tuple("Silvane Orrindel Kesh Amberflow Duskwater Velmar Ystrel Corran Hollin Brenna".split())),
    "currency": ("What is the currency of {country}?", "The currency of {country} is the {value}.",
                 ("What money is used in {country}?", "Which currency do people use in {country}?"),
                 tuple("velder marek silvern korvet lune barra pennic ostrel drachet zennet".split())),
    "mountain": ("What is the highest mountain in {country}?", "The highest mountain in {country} is Mount {value}.",
                 ("Which mountain is the tallest in {country}?", "What is the tallest peak in {country}?"),
                 tuple("Askel Verenhorn Tolvar Brask Caddow Serrat Quorn Elvash Morrig Dravel".split())),
}


def _shuffled(rng: random.Random, pool: tuple[str, ...]) -> list[str]:
    """Fisher-Yates with randrange only (stable across Python versions)."""
    out = list(pool)
    for i in range(len(out) - 1, 0, -1):
        j = rng.randrange(i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def pick_distinct(rng: random.Random, pool, k: int, exclude: str) -> tuple[str, ...]:
    """k distinct values from pool, none equal to `exclude` (randrange only: version-stable)."""
    out: list[str] = []
    while len(out) < k:
        v = pool[rng.randrange(len(pool))]
        if v != exclude and v not in out:
            out.append(v)
    return tuple(out)


@lru_cache(maxsize=None)
def utility_items(split: str) -> tuple[QAItem, ...]:
    """The items of `real_authors` or `world_facts`, kinds interleaved (so `limit` keeps a mix)."""
    from harness.errors import HarnessError

    if split not in UTILITY_SPLITS:
        raise HarnessError(f"fictitious-facts has no utility split {split!r} (has: {', '.join(UTILITY_SPLITS)})")
    rng = random.Random(UTILITY_SEED + UTILITY_SPLITS.index(split))
    items: list[QAItem] = []
    if split == "real_authors":
        people = iter(_shuffled(rng, FAMOUS_PEOPLE))
        for i in range(len(WORKS["novel"])):
            for kind, (q, a, other) in WORK_KINDS.items():
                work, name = WORKS[kind][i], next(people)
                wrong = pick_distinct(rng, FAMOUS_PEOPLE, N_PERTURBED, name)
                items.append(QAItem(
                    id=f"ra-{kind}-{i}", question=q.format(work=work), answer=a.format(work=work, name=name),
                    perturbed_answers=tuple(a.format(work=work, name=w) for w in wrong), entity=name,
                    question_paraphrases=tuple(o.format(work=work) for o in other),
                ))
    else:
        values = {fact: _shuffled(rng, spec[3]) for fact, spec in WORLD_FACTS.items()}
        for c, country in enumerate(COUNTRIES):
            for fact, (q, a, other, pool) in WORLD_FACTS.items():
                value = values[fact][c]
                wrong = pick_distinct(rng, pool, N_PERTURBED, value)
                items.append(QAItem(
                    id=f"wf-{country.lower()}-{fact}", question=q.format(country=country),
                    answer=a.format(country=country, value=value),
                    perturbed_answers=tuple(a.format(country=country, value=w) for w in wrong), entity=country,
                    question_paraphrases=tuple(o.format(country=country) for o in other),
                ))
    return tuple(items)

"""A retrieval benchmark corpus: 200 generated pages with 40 planted facts, and questions that paraphrase them.

The questions keep what a reader would remember (a name, a place, a thing)
but not the sentence's wording: other verbs, other word order, synonyms.
"""

from __future__ import annotations

import random

FACTS: list[tuple[str, str]] = [
    ("The harbour master Ingrid Solheim ordered the breakwater repairs in October.", "Who had the breakwater fixed?"),
    ("Barrels of pine tar were stored in the cellar beneath the customs house.", "Where was the pine tar kept?"),
    (
        "The ferry Aurora Borealis carries at most 212 passengers per crossing.",
        "How many people can ride the Aurora Borealis?",
    ),
    (
        "Dr. Malik Osei discovered that the well water contained traces of manganese.",
        "What did Osei find in the well water?",
    ),
    (
        "The village bakery switched from wood ovens to electric ovens in 1968.",
        "When did the bakery stop baking with wood?",
    ),
    (
        "Copper wiring in the old mill was replaced with aluminium to cut costs.",
        "Why was the mill's copper wiring swapped out?",
    ),
    (
        "The choir of St. Brendan's rehearses every Thursday evening in the crypt.",
        "When does St. Brendan's choir practise?",
    ),
    (
        "Kestrel Pass is closed from December until the snowmelt in April.",
        "During which months can't you drive over Kestrel Pass?",
    ),
    (
        "The museum's whale skeleton was donated by the fisherman Tobias Renn.",
        "Who gave the museum its whale skeleton?",
    ),
    (
        "Salt marsh samples showed a sharp decline in cordgrass after the storm.",
        "What happened to the cordgrass after the storm?",
    ),
    ("The lighthouse lens was ground in Paris by the Barbier workshop.", "Which workshop made the lighthouse lens?"),
    (
        "Annual rainfall at the Gullholm station averages 1,340 millimetres.",
        "How much rain does Gullholm get each year?",
    ),
    (
        "The treaty of Varnhem settled the fishing rights along the eastern shoals.",
        "Which agreement decided who may fish the eastern shoals?",
    ),
    (
        "Engineer Priya Raman redesigned the tidal gate's hydraulic pistons.",
        "Who reworked the hydraulics of the tidal gate?",
    ),
    ("Cormorants nest on the cliffs of Skarvøy from March to July.", "When do the cormorants breed on Skarvøy?"),
    (
        "The old schoolhouse now serves as the island's public library.",
        "What is the former schoolhouse used for today?",
    ),
    ("A fire in 1903 destroyed the original wooden church of Lundby.", "How was Lundby's first church lost?"),
    (
        "The cannery exported smoked mackerel mainly to Hamburg and Rotterdam.",
        "Where did the cannery sell its smoked mackerel?",
    ),
    (
        "Mayor Elif Demir introduced free bicycle rentals for residents.",
        "Which mayor started the free bikes for locals?",
    ),
    (
        "The observatory's telescope has a mirror 61 centimetres across.",
        "How wide is the telescope mirror at the observatory?",
    ),
    (
        "Shipwrights at Nørre Yard still caulk hulls with oakum and hot pitch.",
        "What do the Nørre shipwrights use to seal hulls?",
    ),
    ("The ridge trail to Hawk's Nest takes about four hours on foot.", "How long is the walk up to Hawk's Nest?"),
    (
        "Vintners on the south slope grow mostly Riesling and some Pinot Noir.",
        "Which grapes are planted on the south slope?",
    ),
    (
        "The quarantine station on Moss Island operated until 1921.",
        "When did the Moss Island quarantine station shut down?",
    ),
    ("Archivist Jonas Berglund digitised the parish records of 1750 to 1850.", "Who scanned the old parish registers?"),
    (
        "The heat pump in the town hall draws warmth from the fjord water.",
        "Where does the town hall's heat pump get its heat?",
    ),
    (
        "Herring catches fell by half after the trawling ban was lifted.",
        "How did herring landings change once trawlers were allowed back?",
    ),
    (
        "The bridge to Holmen is made of weathering steel and opened in 2011.",
        "What material was used for the Holmen bridge?",
    ),
    ("Beekeeper Sunniva Haug keeps forty hives near the heather moor.", "How many beehives does Haug look after?"),
    ("The radio mast on Tinden broadcasts the coastal weather forecast.", "What does the Tinden mast transmit?"),
    ("Potatoes from the Vik valley are famous for their yellow flesh.", "What is special about Vik valley potatoes?"),
    ("The shipping company Norlys Line went bankrupt during the 1931 crisis.", "When did Norlys Line collapse?"),
    ("A sundial carved by Anders Lid stands in the churchyard.", "Who made the churchyard sundial?"),
    ("Seals haul out on the Flatskjær sandbank at low tide.", "Where can seals be seen resting when the tide is out?"),
    ("The youth hostel offers sixty beds and a shared kitchen.", "How many guests can the hostel sleep?"),
    (
        "Saltworks at Kvitsand evaporated seawater in iron pans over peat fires.",
        "How did the Kvitsand saltworks get salt from the sea?",
    ),
    (
        "The ice hockey club trains on the frozen Lake Mjøsvann in winter.",
        "Where does the hockey team practise when it is cold?",
    ),
    (
        "Painter Hedda Strøm sold her seascapes at the Saturday market.",
        "Where did Strøm sell her paintings of the sea?",
    ),
    ("The water tower holds 800 cubic metres and was built in 1935.", "How much can the water tower store?"),
    ("Fog signals at Kapp Vest used compressed air horns until 1990.", "What kind of foghorn did Kapp Vest have?"),
]

_SUBJECTS = [
    "The committee",
    "A visiting surveyor",
    "The council",
    "Local farmers",
    "The harbour office",
    "Several families",
    "The regional newspaper",
    "An engineering firm",
    "The school board",
    "Most shopkeepers",
    "The road department",
    "Tourists",
    "The coastal authority",
    "Fishermen from the north",
    "The parish",
    "A group of students",
]
_VERBS = [
    "discussed",
    "reviewed",
    "postponed",
    "approved",
    "questioned",
    "measured",
    "described",
    "recorded",
    "planned",
    "criticised",
    "welcomed",
    "estimated",
    "compared",
    "documented",
    "inspected",
    "funded",
]
_OBJECTS = [
    "the budget for the coming season",
    "plans for a new jetty",
    "the condition of the coastal road",
    "the timetable of the morning bus",
    "the price of heating oil",
    "a proposal to widen the square",
    "the results of the autumn census",
    "the state of the drainage ditches",
    "the opening hours of the post office",
    "a survey of the dunes",
    "the lease of the old warehouse",
    "the schedule for snow clearing",
    "repairs to the community hall",
    "the annual accounts of the cooperative",
    "the boundaries of the grazing land",
    "the cost of a second ambulance",
]
_TAILS = [
    "after a long meeting",
    "without reaching a decision",
    "in the spring report",
    "at the request of residents",
    "for the third year running",
    "with some reservations",
    "according to the minutes",
    "before the holidays",
    "despite the weather",
    "in a short statement",
    "during the public hearing",
    "as expected",
]


def build_pages(n_pages: int = 200, seed: int = 7) -> tuple[list[str], dict[int, int]]:
    """Pages of plausible filler; fact i is planted on page `where[i]` (1-based)."""
    rng = random.Random(seed)
    pages = []
    for _ in range(n_pages):
        sentences = [
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}."
            for _ in range(rng.randint(18, 28))
        ]
        pages.append(" ".join(sentences))
    where = {}
    for i, (fact, _question) in enumerate(FACTS):
        page = rng.randrange(n_pages)
        while page + 1 in where.values():
            page = rng.randrange(n_pages)
        words = pages[page].split(". ")
        words.insert(rng.randrange(len(words)), fact.rstrip("."))
        pages[page] = ". ".join(words)
        where[i] = page + 1
    return pages, where

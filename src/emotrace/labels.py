"""The canonical emotion vocabulary, and each corpus's standard label sets.

Corpus readers translate their raw codes into canonical names (``"exc"`` -> ``"excited"``);
a :class:`LabelSet` then chooses the classes an experiment uses, merges some (IEMOCAP's
excited into happy) and drops the rest. Keeping the two steps apart lets one reader serve
every label set in the literature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: Every emotion name emotrace knows, in a fixed order (used for colours and sorting).
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "excited",
    "sad",
    "angry",
    "frustrated",
    "fearful",
    "disgusted",
    "surprised",
    "contempt",
    "bored",
    "other",
)

#: A colour for every name in :data:`EMOTIONS`, the same in every figure and on the service's
#: page (kept here, not with the plots, so the service need not import matplotlib). Mostly the
#: Okabe-Ito and Paul Tol "muted" palettes, which stay distinguishable with colour-vision
#: deficiencies, assigned so that the usual associations hold: angry red, sad blue, happy
#: orange, neutral grey. The light ones are darkened (same hue) to at least 3.4:1 against white
#: and the plots' light grey, above the 3:1 that WCAG asks of lines and marks people must see.
EMOTION_COLOURS: Mapping[str, str] = MappingProxyType(
    {
        "neutral": "#888888",  # grey
        "calm": "#3C9687",  # teal
        "happy": "#B57D00",  # orange
        "excited": "#9A8727",  # sand
        "sad": "#0072B2",  # blue
        "angry": "#D55E00",  # vermilion
        "frustrated": "#882255",  # wine
        "fearful": "#7E57C2",  # purple
        "disgusted": "#8C8C2F",  # olive
        "surprised": "#C6699D",  # pink
        "contempt": "#332288",  # indigo
        "bored": "#1D90C9",  # light blue
        "other": "#3B3B3B",  # dark grey
    }
)
#: Common spellings found in corpora and user files, mapped to canonical names.
ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "neu": "neutral",
        "n": "neutral",
        "neutrality": "neutral",
        "cal": "calm",
        "hap": "happy",
        "happiness": "happy",
        "joy": "happy",
        "h": "happy",
        "exc": "excited",
        "excitement": "excited",
        "sad": "sad",
        "sadness": "sad",
        "sa": "sad",
        "ang": "angry",
        "anger": "angry",
        "a": "angry",
        "fru": "frustrated",
        "frustration": "frustrated",
        "fea": "fearful",
        "fear": "fearful",
        "f": "fearful",
        "dis": "disgusted",
        "disgust": "disgusted",
        "d": "disgusted",
        "sur": "surprised",
        "surprise": "surprised",
        "su": "surprised",
        "pleasant surprise": "surprised",
        "ps": "surprised",
        "con": "contempt",
        "boredom": "bored",
        "bor": "bored",
        "oth": "other",
        "xxx": "other",
    }
)


def canonical(name: str) -> str:
    """Canonical emotion name for ``name``; raises ``KeyError`` for an unknown label."""
    key = name.strip().lower()
    if key in EMOTIONS:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise KeyError(name)


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of classes plus the merges that feed it.

    A canonical label maps to ``merge.get(label, label)``; if that is not among
    ``classes`` the utterance is left out of the experiment.
    """

    name: str
    classes: tuple[str, ...]
    merge: Mapping[str, str] = field(default_factory=dict)

    def map(self, label: str) -> str | None:
        target = self.merge.get(label, label)
        return target if target in self.classes else None

    def index(self, label: str) -> int:
        return self.classes.index(label)

    def __len__(self) -> int:
        return len(self.classes)


def label_set(name: str, classes: tuple[str, ...], **merge: str) -> LabelSet:
    return LabelSet(name, classes, MappingProxyType(dict(merge)))


RAVDESS_8 = label_set(
    "ravdess8",
    ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgusted", "surprised"),
)
#: RAVDESS with calm merged into neutral (used when pairing with corpora that lack calm).
RAVDESS_7 = label_set(
    "ravdess7",
    ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"),
    calm="neutral",
)
IEMOCAP_4 = label_set("iemocap4", ("neutral", "happy", "sad", "angry"), excited="happy")
IEMOCAP_6 = label_set("iemocap6", ("neutral", "happy", "sad", "angry", "excited", "frustrated"))
CREMAD_6 = label_set("cremad6", ("angry", "disgusted", "fearful", "happy", "neutral", "sad"))
MELD_7 = label_set("meld7", ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"))
EMODB_7 = label_set("emodb7", ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "bored"))
SAVEE_7 = label_set("savee7", ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"))
TESS_7 = label_set("tess7", SAVEE_7.classes)
ASED_5 = label_set("ased5", ("neutral", "happy", "sad", "angry", "fearful"))
NEMO_6 = label_set("nemo6", ("neutral", "happy", "sad", "angry", "fearful", "surprised"))
#: The four classes EmoBox's cross-corpus track scores (the ones most corpora share).
CROSS_CORPUS_4 = label_set("cross4", ("neutral", "happy", "sad", "angry"))

LABEL_SETS: Mapping[str, LabelSet] = MappingProxyType(
    {
        ls.name: ls
        for ls in (
            RAVDESS_8,
            RAVDESS_7,
            IEMOCAP_4,
            IEMOCAP_6,
            CREMAD_6,
            MELD_7,
            EMODB_7,
            SAVEE_7,
            TESS_7,
            ASED_5,
            NEMO_6,
            CROSS_CORPUS_4,
        )
    }
)


def open_label_set(classes: list[str] | tuple[str, ...], name: str = "custom") -> LabelSet:
    """A label set of exactly ``classes`` in canonical order (for manifests)."""
    canon = {canonical(c) for c in classes}
    return LabelSet(name, tuple(e for e in EMOTIONS if e in canon), MappingProxyType({}))

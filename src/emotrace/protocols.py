"""The two evaluation and prediction protocols, named once for every layer that reads them.

*utterance-level*: each utterance on its own, as a deployed model meets a new speaker.
*speaker-adaptive*: features normalised by the speaker's own moments, estimated from several
of the speaker's unlabelled recordings (:mod:`emotrace.features.normalization`). It is worth
several points of UA but needs those recordings, so it is never applied silently: runs,
reports and predictions name the protocol that produced them.
"""

from __future__ import annotations

from emotrace.errors import EmotraceError

UTTERANCE_LEVEL = "utterance-level"
SPEAKER_ADAPTIVE = "speaker-adaptive"
PROTOCOLS = (UTTERANCE_LEVEL, SPEAKER_ADAPTIVE)


class ProtocolError(EmotraceError, ValueError):
    """A protocol that is unknown, or that a model cannot run under (e.g. speaker-adaptive without moments)."""


def check_protocol(protocol: str) -> str:
    """``protocol`` itself when it is one of :data:`PROTOCOLS`; a :class:`ProtocolError` otherwise."""
    if protocol not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return protocol

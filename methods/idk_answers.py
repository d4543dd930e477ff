"""This project's own "I don't know" answers: IdkDPO's preferred responses (docs/methods.md §5.5).

Written for this harness (not copied from TOFU's `idontknow.jsonl` or open-unlearning's
`idk.jsonl`). Each is a complete, polite non-answer that reveals nothing about the question.
"""

from __future__ import annotations

IDK_ANSWERS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is something I can't tell you.",
    "I don't have an answer to that question.",
    "Sorry, I don't know the answer.",
    "I'm afraid I can't help with that one.",
    "I couldn't say.",
    "I really have no idea.",
    "That's outside what I know.",
    "I don't have any details about that.",
    "Unfortunately, I can't answer that.",
    "I'm unable to provide that information.",
    "Nothing I know covers that question.",
    "I can't recall anything about that.",
    "I have no knowledge of that.",
    "I'm not able to answer this.",
    "That isn't something I know about.",
    "I don't have reliable information on this.",
    "I'd only be guessing, so I'll say I don't know.",
    "My knowledge doesn't extend to that.",
    "Nothing comes to mind for that question.",
    "I can't give you an answer to that.",
    "That question is beyond what I can answer.",
    "I honestly don't know.",
    "I have nothing to share on that topic.",
    "I'm not aware of the answer.",
    "I wouldn't know, I'm afraid.",
    "There's no answer I can give you on that.",
    "I lack the information needed to answer.",
    "I'm uncertain, and I'd rather not guess.",
    "That subject is unfamiliar to me.",
    "I can't speak to that.",
    "I don't have that information available.",
    "No idea, sorry.",
    "I'm not the right source for that answer.",
    "I'm sorry, but I don't know anything about that.",
    "I can't provide details on that subject.",
    "That is unknown to me.",
    "I'm not in a position to answer that.",
)

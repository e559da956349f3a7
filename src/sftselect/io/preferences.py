"""Preference pairs from ranked replies: the replies each prompt has, their order, and TRL's preference rows.

A `RankedGroup` is one prompt with several replies, each scored (higher is better): an
OpenAssistant message's ranked replies, an UltraFeedback instruction's rated completions, or the
answers several files give to one instruction. `pair_up` makes the pairs a group holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from sftselect.errors import OptionError
from sftselect.io.formats import oasst_message_turn, rated_completions, ranked_replies, ultrafeedback_prompt
from sftselect.records import PreferenceRecord, Record, Turn

PAIRINGS = ("all", "adjacent")


@dataclass(frozen=True)
class Candidate:
    """One reply to a group's prompt: its turns, its score (higher is better) and where it came from."""

    reply: tuple[Turn, ...]
    score: float
    source: str

    @property
    def text(self) -> str:
        """The reply's text with runs of whitespace made one space: what 'identical' compares."""
        return " ".join(" ".join(turn.text for turn in self.reply).split())


@dataclass(frozen=True)
class RankedGroup:
    """A prompt and its scored replies; `id` names the prompt (a message id, a record id)."""

    id: str
    prompt: tuple[Turn, ...]
    candidates: tuple[Candidate, ...]


@dataclass
class PairCounts:
    """What pairing left out: pairs of equal score, of the same text, or closer than the minimum gap."""

    ties: int = 0
    identical: int = 0
    below_gap: int = 0


def pair_up(group: RankedGroup, min_gap: float = 0.0, pairing: str = "all", counts: PairCounts | None = None) -> list[tuple[Candidate, Candidate]]:
    """The (chosen, rejected) pairs of a group, best chosen first.

    `all`: each reply with each reply scoring at least `min_gap` below it; `adjacent`: each reply
    with the best of those. Ties and replies of the same text (whitespace aside) are never paired.
    """
    if pairing not in PAIRINGS:
        raise OptionError(f"{{pairing}} must be one of {', '.join(PAIRINGS)}, not {pairing!r}", options=("pairing",))
    if min_gap < 0:
        raise OptionError(f"{{min_gap}} must be 0 or more, not {min_gap}", options=("min_gap",))
    counts = counts if counts is not None else PairCounts()
    ordered = sorted((c for c in group.candidates if c.score == c.score), key=lambda c: -c.score)
    pairs = []
    for position, better in enumerate(ordered):
        for worse in ordered[position + 1 :]:
            if better.text == worse.text:
                counts.identical += 1
            elif better.score == worse.score:
                counts.ties += 1
            elif better.score - worse.score < min_gap:
                counts.below_gap += 1
            else:
                pairs.append((better, worse))
                if pairing == "adjacent":
                    break
    return pairs


def _messages(turns: Sequence[Turn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.text} for turn in turns]


def trl_preference_row(record: PreferenceRecord) -> dict[str, list[dict[str, str]]]:
    """A preference pair of any format as TRL's conversational preference row with an explicit prompt (what DPOTrainer reads)."""
    return {"prompt": _messages(record.prompt), "chosen": _messages(record.chosen), "rejected": _messages(record.rejected)}


def pair_row(group: RankedGroup, chosen: Candidate, rejected: Candidate) -> dict[str, Any]:
    """TRL's conversational preference row with an explicit prompt, and five provenance fields TRL ignores."""
    return {
        "prompt": _messages(group.prompt),
        "chosen": _messages(chosen.reply),
        "rejected": _messages(rejected.reply),
        "prompt_id": group.id,
        "chosen_score": float(chosen.score),
        "rejected_score": float(rejected.score),
        "chosen_source": chosen.source,
        "rejected_source": rejected.source,
    }


def tree_groups(tree: Mapping[str, Any], fields: Mapping[str, str]) -> Iterator[RankedGroup]:
    """Every user message of an OpenAssistant tree with two or more ranked assistant replies, the conversation up to it as the prompt.

    A reply's score is minus its rank (rank 0 is best); unranked and deleted replies are left
    out, and so is everything below a deleted message.
    """
    stack: list[tuple[Mapping[str, Any], tuple[Turn, ...]]] = [(tree[fields["prompt"]], ())]
    while stack:
        node, before = stack.pop()
        path = before + (oasst_message_turn(node, len(before)),)
        if node.get("role") == "prompter":
            ranked = [reply for reply in ranked_replies(node) if reply.get("role") == "assistant"]
            if len(ranked) > 1:
                yield RankedGroup(
                    str(node.get("message_id", len(before))),
                    path,
                    tuple(
                        Candidate((oasst_message_turn(reply, len(path)),), -float(reply["rank"]), str(reply.get("message_id", "")))
                        for reply in ranked
                    ),
                )
        replies = node.get("replies") if isinstance(node.get("replies"), list) else []
        live = [reply for reply in replies if not (isinstance(reply, Mapping) and reply.get("deleted"))]
        stack.extend((reply, path) for reply in reversed(live))


def ultrafeedback_group(row: Mapping[str, Any], fields: Mapping[str, str], group_id: str) -> RankedGroup:
    """An UltraFeedback row's instruction and its completions, scored by their ratings, named by their `model`."""
    completions = row[fields["completions"]]
    candidates = []
    for number, (response, rating) in enumerate(rated_completions(row, fields)):
        model = completions[number].get("model") if isinstance(completions, list) else None
        candidates.append(Candidate((Turn("assistant", response),), rating, str(model) if model else f"completions[{number}]"))
    return RankedGroup(group_id, ultrafeedback_prompt(row, fields), tuple(candidates))


def split_reply(record: Record) -> tuple[tuple[Turn, ...], tuple[Turn, ...]]:
    """A conversation's prompt (up to its last user turn) and its reply (what follows); the reply may be empty."""
    last_user = max((position for position, turn in enumerate(record.turns) if turn.role == "user"), default=-1)
    return record.turns[: last_user + 1], record.turns[last_user + 1 :]

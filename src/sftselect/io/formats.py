"""Instruction formats: how a raw record's fields become conversation turns.

Each format names the fields it reads by canonical names (`instruction`, `output`, ...);
a field map (`--field instruction=question`) says which key of the record holds each one.
Without a map, a canonical name matches the key of the same name, or one differing only in
case (the WizardLM test set spells it `Instruction`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sftselect.errors import OptionError
from sftselect.records import Turn


class RecordProblem(ValueError):
    """What is wrong with one record; the reader adds the file, line and record number."""


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}
MESSAGE_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
OASST_ROLES = {"prompter": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Format:
    """One instruction format: its fields, how to detect it and how to read a record's turns."""

    name: str
    fields: tuple[str, ...]
    required: tuple[str, ...]
    to_turns: Callable[[Mapping[str, Any], Mapping[str, str]], tuple[Turn, ...]]
    description: str
    has_responses: bool = True
    id_field: str = "id"
    accepts: Callable[[Mapping[str, Any], Mapping[str, str]], bool] | None = None
    message_fields: tuple[str, ...] = ()
    to_preference: Callable[[Mapping[str, Any], Mapping[str, str]], PreferenceTurns] | None = None

    @property
    def is_preference(self) -> bool:
        """Whether a record of this format is a preference pair: a prompt, a chosen and a rejected reply."""
        return self.to_preference is not None

    def resolve_fields(self, keys: list[str], field_map: Mapping[str, str]) -> dict[str, str]:
        """Map each canonical field to the record key holding it (mapped, same name, or same name in another case)."""
        lowered = {str(key).lower(): key for key in keys}
        resolved: dict[str, str] = {}
        for canonical in self.fields:
            if canonical in field_map:
                resolved[canonical] = field_map[canonical]
            elif canonical not in keys and canonical in lowered:
                resolved[canonical] = lowered[canonical]
            else:
                resolved[canonical] = canonical
        for canonical in self.message_fields:
            resolved[canonical] = field_map.get(canonical, canonical)
        return resolved

    def fits(self, record: Mapping[str, Any], fields: Mapping[str, str]) -> bool:
        """Whether a record has every required field of this format."""
        if any(fields[name] not in record for name in self.required):
            return False
        return self.accepts is None or self.accepts(record, fields)

    def id_of(self, record: Mapping[str, Any]) -> Any:
        """The record's own id as written: its `id` field, else this format's id field; None when it has neither."""
        own_id = record.get("id")
        if own_id is None and self.id_field != "id":
            own_id = record.get(self.id_field)
        return own_id

    def holds(self, record: Mapping[str, Any], fields: Mapping[str, str]) -> bool:
        """Whether a record fits this format with a value, not null, in every required field."""
        return all(record.get(fields[name]) is not None for name in self.required) and (
            self.accepts is None or self.accepts(record, fields)
        )


def _text(value: Any, what: str) -> str:
    if isinstance(value, str):
        return value
    raise RecordProblem(f"{what} is {kind_of(value)}, expected a string")


def _field_text(record: Mapping[str, Any], fields: Mapping[str, str], canonical: str) -> str:
    """A string field's text; a missing key is told apart from a null value."""
    key = fields[canonical]
    if key not in record:
        raise RecordProblem(f"record has no field {key!r}")
    return _text(record[key], f"field {key!r}")


def is_mapping(value: Any) -> bool:
    """Whether a value is a JSON object; plain dicts are checked first, as the abstract check costs more than parsing."""
    return isinstance(value, dict) or isinstance(value, Mapping)


def kind_of(value: Any) -> str:
    """A value's JSON kind for messages: "a number", "a list", "null", ..."""
    if value is None:
        return "null"
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _get(record: Mapping[str, Any], fields: Mapping[str, str], canonical: str) -> Any:
    return record.get(fields[canonical])


def _response(record: Mapping[str, Any], fields: Mapping[str, str], canonical: str) -> str:
    value = _get(record, fields, canonical)
    if value is None:
        raise RecordProblem(f"record has no response (field {fields.get(canonical, canonical)!r} is missing or null)")
    return _text(value, f"field {fields[canonical]!r}")


def _maybe_json_list(value: Any) -> Any:
    """CSV cells hold conversations as JSON text; decode them so the CSV reads like JSON."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _history_turns(history: Any, key: str) -> list[Turn]:
    if history is None:
        return []
    history = _maybe_json_list(history)
    if not isinstance(history, list):
        raise RecordProblem(f"field {key!r} is {kind_of(history)}, expected a list of [user, assistant] pairs")
    turns: list[Turn] = []
    for number, pair in enumerate(history):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise RecordProblem(f"field {key!r} item {number} is not a [user, assistant] pair")
        turns.append(Turn("user", _text(pair[0], f"field {key!r} item {number} user text")))
        turns.append(Turn("assistant", _text(pair[1], f"field {key!r} item {number} assistant text")))
    return turns


def _system_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> list[Turn]:
    system = _get(record, fields, "system")
    if system is None or system == "":
        return []
    return [Turn("system", _text(system, f"field {fields['system']!r}"))]


def alpaca_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """System, then `history` pairs, then the instruction (joined with a non-empty input by a newline) and output."""
    instruction = _field_text(record, fields, "instruction")
    extra = _get(record, fields, "input")
    if extra is not None and extra != "":
        input_key = fields["input"]
        instruction = f"{instruction}\n{_text(extra, f'field {input_key!r}')}"
    output = _response(record, fields, "output")
    turns = _system_turns(record, fields) + _history_turns(_get(record, fields, "history"), fields.get("history", ""))
    return tuple(turns + [Turn("user", instruction), Turn("assistant", output)])


def _role_content_turns(
    items: Any, key: str, role_key: str, content_key: str, roles: Mapping[str, str]
) -> list[Turn]:
    items = _maybe_json_list(items)
    if not isinstance(items, list):
        raise RecordProblem(f"field {key!r} is {kind_of(items)}, expected a list of messages")
    turns = []
    for number, item in enumerate(items):
        if not is_mapping(item):
            raise RecordProblem(f"{key}[{number}] is {kind_of(item)}, expected an object")
        role = item.get(role_key)
        if role not in roles:
            allowed = ", ".join(sorted(roles))
            raise RecordProblem(f"{key}[{number}] has role {role!r}, which this format does not allow (allowed: {allowed})")
        turns.append(Turn(roles[role], _content_text(item.get(content_key), f"{key}[{number}].{content_key}")))
    return turns


def _content_text(content: Any, where: str) -> str:
    """A message's text; OpenAI's list of content parts is accepted when every part is text."""
    if isinstance(content, list) and content and all(
        is_mapping(part) and part.get("type") == "text" and isinstance(part.get("text"), str) for part in content
    ):
        return "".join(part["text"] for part in content)
    return _text(content, where)


def _require_response(turns: list[Turn]) -> tuple[Turn, ...]:
    if not any(turn.role == "assistant" for turn in turns):
        raise RecordProblem("record has no response (no assistant turn)")
    return tuple(turns)


def sharegpt_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """`conversations` of {from, value}; a top-level `system` field (LLaMA-Factory) comes first."""
    key = fields["conversations"]
    items = _maybe_json_list(record.get(key))
    role_key, content_key = fields["from"], fields["value"]
    if isinstance(items, list) and items and is_mapping(items[0]) and role_key not in items[0]:
        if "role" in items[0]:
            role_key, content_key = "role", "content"
    turns = _system_turns(record, fields) + _role_content_turns(items, key, role_key, content_key, SHAREGPT_ROLES)
    return _require_response(turns)


def messages_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """OpenAI chat `messages` of {role, content}; `developer` counts as system."""
    turns = _role_content_turns(
        record.get(fields["messages"]),
        fields["messages"],
        fields["role"],
        fields["content"],
        MESSAGE_ROLES,
    )
    return _require_response(turns)


def prompt_completion_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """`prompt` and `completion` as strings, or (TRL's conversational form) as lists of messages."""
    prompt, completion = _get(record, fields, "prompt"), _get(record, fields, "completion")
    if completion is None:
        raise RecordProblem(f"record has no response (field {fields['completion']!r} is missing or null)")
    turns: list[Turn] = []
    if isinstance(prompt, list):
        turns += _role_content_turns(prompt, fields["prompt"], "role", "content", MESSAGE_ROLES)
    else:
        turns.append(Turn("user", _text(prompt, f"field {fields['prompt']!r}")))
    if isinstance(completion, list):
        turns += _role_content_turns(completion, fields["completion"], "role", "content", MESSAGE_ROLES)
    else:
        turns.append(Turn("assistant", _text(completion, f"field {fields['completion']!r}")))
    return _require_response(turns)


def query_response_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """`query` and `response`, with optional `system` and `history` pairs as in Alpaca."""
    query = _field_text(record, fields, "query")
    response = _response(record, fields, "response")
    turns = _system_turns(record, fields) + _history_turns(_get(record, fields, "history"), fields.get("history", ""))
    return tuple(turns + [Turn("user", query), Turn("assistant", response)])


def humaneval_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """HumanEval: the function `prompt` and its `canonical_solution`."""
    prompt = _field_text(record, fields, "prompt")
    return (Turn("user", prompt), Turn("assistant", _response(record, fields, "canonical_solution")))


def question_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """MT-Bench / Vicuna-bench questions: a list of user `turns`, no answers by nature."""
    questions = _get(record, fields, "turns")
    if not isinstance(questions, list) or not questions:
        raise RecordProblem(f"field {fields['turns']!r} is {kind_of(questions)}, expected a non-empty list of questions")
    return tuple(Turn("user", _text(text, f"{fields['turns']}[{n}]")) for n, text in enumerate(questions))


def reference_answer_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """MT-Bench reference answers: the first choice's `turns`, as assistant turns without their questions."""
    choices = _get(record, fields, "choices")
    if not isinstance(choices, list) or not choices or not is_mapping(choices[0]):
        raise RecordProblem(f"field {fields['choices']!r} is {kind_of(choices)}, expected a list of choices")
    answers = choices[0].get("turns")
    if not isinstance(answers, list) or not answers:
        raise RecordProblem(f"{fields['choices']}[0].turns is {kind_of(answers)}, expected a non-empty list of answers")
    return tuple(Turn("assistant", _text(text, f"{fields['choices']}[0].turns[{n}]")) for n, text in enumerate(answers))


def instruction_only_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """Test sets of bare instructions (WizardLM's): one user turn, no answer by nature."""
    return (Turn("user", _field_text(record, fields, "instruction")),)


def _best_reply(replies: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The reply ranked best (rank 0), preferring replies not deleted; unranked replies come after ranked ones."""
    candidates = [reply for reply in replies if is_mapping(reply) and not reply.get("deleted")]
    candidates = candidates or [reply for reply in replies if is_mapping(reply)]
    if not candidates:
        return None
    return min(
        enumerate(candidates),
        key=lambda item: (item[1].get("rank") is None, item[1].get("rank") or 0, item[0]),
    )[1]


def oasst_tree_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """An OpenAssistant message tree read as the conversation along its best-ranked path."""
    node = _get(record, fields, "prompt")
    turns: list[Turn] = []
    depth = 0
    while node is not None:
        if not is_mapping(node):
            raise RecordProblem(f"message at depth {depth} is {kind_of(node)}, expected an object")
        role = node.get("role")
        if role not in OASST_ROLES:
            raise RecordProblem(f"message at depth {depth} has role {role!r}, which this format does not allow (allowed: assistant, prompter)")
        turns.append(Turn(OASST_ROLES[role], _text(node.get("text"), f"message at depth {depth} text")))
        replies = node.get("replies") or []
        node = _best_reply(replies) if isinstance(replies, list) else None
        depth += 1
    return _require_response(turns)


# Preference formats ---------------------------------------------------------------

PreferenceTurns = tuple[tuple[Turn, ...], tuple[Turn, ...], tuple[Turn, ...]]
_HH_MARKER = re.compile(r"\n\n(Human|Assistant): ?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _as_sft(to_preference: Callable[[Mapping[str, Any], Mapping[str, str]], PreferenceTurns]) -> Callable[..., tuple[Turn, ...]]:
    """A preference format's turns as an instruction record: the prompt, then the chosen reply."""

    def to_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
        prompt, chosen, _ = to_preference(record, fields)
        return prompt + chosen

    to_turns.__doc__ = to_preference.__doc__
    return to_turns


def _reply(turns: list[Turn], key: str) -> tuple[Turn, ...]:
    if not any(turn.role == "assistant" for turn in turns):
        raise RecordProblem(f"field {key!r} holds no assistant reply")
    return tuple(turns)


def _messages_or_text(value: Any, key: str, role: str) -> list[Turn]:
    """A TRL field: a string (one turn of `role`) or a list of {role, content} messages."""
    value = _maybe_json_list(value)
    if isinstance(value, list):
        return _role_content_turns(value, key, "role", "content", MESSAGE_ROLES)
    return [Turn(role, _text(value, f"field {key!r}"))]


def preference_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> PreferenceTurns:
    """TRL's `prompt`, `chosen`, `rejected`: strings or message lists; replies that repeat the prompt first have it taken off."""
    prompt = tuple(_messages_or_text(_get(record, fields, "prompt"), fields["prompt"], "user"))
    replies = []
    for canonical in ("chosen", "rejected"):
        if _get(record, fields, canonical) is None:
            raise RecordProblem(f"record has no response (field {fields[canonical]!r} is missing or null)")
        turns = _messages_or_text(record[fields[canonical]], fields[canonical], "assistant")
        # UltraFeedback-binarized writes the whole conversation in chosen/rejected beside the prompt.
        if len(turns) > len(prompt) and tuple(turns[: len(prompt)]) == prompt:
            turns = turns[len(prompt) :]
        replies.append(_reply(turns, fields[canonical]))
    return prompt, replies[0], replies[1]


def _hh_dialogue(value: Any, key: str) -> list[Turn]:
    """An HH-RLHF dialogue ("\\n\\nHuman: ...\\n\\nAssistant: ...") or a list of messages, as turns."""
    value = _maybe_json_list(value)
    if isinstance(value, list):
        return _role_content_turns(value, key, "role", "content", MESSAGE_ROLES)
    text = _text(value, f"field {key!r}")
    parts = _HH_MARKER.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise RecordProblem(f"field {key!r} is not a dialogue of '\\n\\nHuman: ' and '\\n\\nAssistant: ' turns")
    return [Turn(_HH_ROLES[parts[i]], parts[i + 1]) for i in range(1, len(parts), 2)]


def hh_rlhf_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> PreferenceTurns:
    """HH-RLHF: `chosen` and `rejected` whole dialogues; the prompt is their shared turns, up to the last shared user turn."""
    dialogues = []
    for canonical in ("chosen", "rejected"):
        if _get(record, fields, canonical) is None:
            raise RecordProblem(f"record has no response (field {fields[canonical]!r} is missing or null)")
        dialogues.append(_hh_dialogue(record[fields[canonical]], fields[canonical]))
    chosen, rejected = dialogues
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared and chosen[shared - 1].role != "user":
        shared -= 1
    if not shared:
        raise RecordProblem(f"fields {fields['chosen']!r} and {fields['rejected']!r} share no prompt (no user turn before they differ)")
    return tuple(chosen[:shared]), _reply(chosen[shared:], fields["chosen"]), _reply(rejected[shared:], fields["rejected"])


def rated_completions(record: Mapping[str, Any], fields: Mapping[str, str]) -> list[tuple[str, float]]:
    """UltraFeedback's completions as (response, rating), in their order; the rating is `overall_score` unless mapped."""
    key, response_key, rating_key = fields["completions"], fields["response"], fields["overall_score"]
    completions = _maybe_json_list(record.get(key))
    if not isinstance(completions, list):
        raise RecordProblem(f"field {key!r} is {kind_of(completions)}, expected a list of rated completions")
    rated = []
    for number, completion in enumerate(completions):
        if not is_mapping(completion):
            raise RecordProblem(f"{key}[{number}] is {kind_of(completion)}, expected an object")
        rating = completion.get(rating_key)
        if isinstance(rating, bool) or not isinstance(rating, (int, float)):
            raise RecordProblem(f"{key}[{number}].{rating_key} is {kind_of(rating)}, expected a number")
        rated.append((_text(completion.get(response_key), f"{key}[{number}].{response_key}"), float(rating)))
    return rated


def ultrafeedback_prompt(record: Mapping[str, Any], fields: Mapping[str, str]) -> tuple[Turn, ...]:
    """UltraFeedback's `instruction` as the prompt."""
    return (Turn("user", _field_text(record, fields, "instruction")),)


def ultrafeedback_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> PreferenceTurns:
    """UltraFeedback: the `instruction`, its best-rated completion (the first among equals) over its worst-rated (the last)."""
    prompt = ultrafeedback_prompt(record, fields)
    rated = rated_completions(record, fields)
    if len({rating for _, rating in rated}) < 2:
        raise RecordProblem(f"field {fields['completions']!r} holds no two completions of different ratings: no preference")
    best = max(range(len(rated)), key=lambda i: (rated[i][1], -i))
    worst = min(range(len(rated)), key=lambda i: (rated[i][1], -i))
    return prompt, (Turn("assistant", rated[best][0]),), (Turn("assistant", rated[worst][0]),)


def ranked_replies(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """An OpenAssistant message's replies that have a human `rank` and are not deleted, best (rank 0) first."""
    replies = node.get("replies") or []
    if not isinstance(replies, list):
        return []
    ranked = [reply for reply in replies if is_mapping(reply) and not reply.get("deleted") and isinstance(reply.get("rank"), int)]
    return sorted(ranked, key=lambda reply: reply["rank"])


def oasst_message_turn(node: Any, depth: int) -> Turn:
    """One OpenAssistant message as a turn (`prompter` is the user)."""
    if not is_mapping(node):
        raise RecordProblem(f"message at depth {depth} is {kind_of(node)}, expected an object")
    role = node.get("role")
    if role not in OASST_ROLES:
        raise RecordProblem(f"message at depth {depth} has role {role!r}, which this format does not allow (allowed: assistant, prompter)")
    return Turn(OASST_ROLES[role], _text(node.get("text"), f"message at depth {depth} text"))


def oasst_ranks_turns(record: Mapping[str, Any], fields: Mapping[str, str]) -> PreferenceTurns:
    """An OpenAssistant tree as one pair: along its best-ranked path, the first prompter message with two
    differently ranked assistant replies; its rank-0 reply over its worst-ranked one."""
    node = _get(record, fields, "prompt")
    path: list[Turn] = []
    depth = 0
    while node is not None:
        path.append(oasst_message_turn(node, depth))
        ranked = [reply for reply in ranked_replies(node) if reply.get("role") == "assistant"]
        if node.get("role") == "prompter" and len({reply["rank"] for reply in ranked}) > 1:
            best, worst = ranked[0], ranked[-1]
            return (
                tuple(path),
                (oasst_message_turn(best, depth + 1),),
                (oasst_message_turn(worst, depth + 1),),
            )
        replies = node.get("replies") or []
        node = _best_reply(replies) if isinstance(replies, list) else None
        depth += 1
    raise RecordProblem("no prompter message on the best-ranked path has two differently ranked replies: no preference")


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("messages", ("messages",), ("messages",), messages_turns, "OpenAI chat: messages of {role, content}",
               message_fields=("role", "content")),
        Format(
            "sharegpt",
            ("conversations", "system"),
            ("conversations",),
            sharegpt_turns,
            "ShareGPT: conversations of {from, value} (human/gpt/system, or user/assistant)",
            message_fields=("from", "value"),
        ),
        Format(
            "alpaca",
            ("instruction", "input", "output", "history", "system"),
            ("instruction", "output"),
            alpaca_turns,
            "Alpaca: instruction, input, output, optional history and system",
        ),
        Format(
            "oasst_tree",
            ("prompt",),
            ("prompt",),
            oasst_tree_turns,
            "OpenAssistant message tree: the best-ranked path from the prompt",
            id_field="message_tree_id",
            accepts=lambda record, fields: is_mapping(record.get(fields["prompt"])),
        ),
        Format("prompt_completion", ("prompt", "completion"), ("prompt", "completion"), prompt_completion_turns,
               "prompt and completion (strings, or TRL's lists of messages)"),
        Format("query_response", ("query", "response", "history", "system"), ("query", "response"), query_response_turns,
               "query and response, optional history and system"),
        Format("humaneval", ("prompt", "canonical_solution"), ("prompt", "canonical_solution"), humaneval_turns,
               "HumanEval: prompt and canonical_solution", id_field="task_id"),
        Format("questions", ("turns",), ("turns",), question_turns,
               "MT-Bench/Vicuna-bench questions: a list of user turns, no answers", has_responses=False,
               id_field="question_id"),
        Format("reference_answers", ("choices",), ("choices",), reference_answer_turns,
               "MT-Bench reference answers: choices[0].turns as assistant turns", id_field="question_id"),
        Format("instructions", ("instruction",), ("instruction",), instruction_only_turns,
               "bare instructions with no answers (WizardLM test set)", has_responses=False, id_field="idx"),
        Format("preference", ("prompt", "chosen", "rejected"), ("prompt", "chosen", "rejected"), _as_sft(preference_turns),
               "preference pairs: prompt, chosen, rejected (strings, or TRL's lists of messages)",
               to_preference=preference_turns),
        Format("hh_rlhf", ("chosen", "rejected"), ("chosen", "rejected"), _as_sft(hh_rlhf_turns),
               "HH-RLHF preference pairs: chosen and rejected whole dialogues sharing their prompt",
               to_preference=hh_rlhf_turns),
        Format("ultrafeedback", ("instruction", "completions"), ("instruction", "completions"), _as_sft(ultrafeedback_turns),
               "UltraFeedback: an instruction and its rated completions (best over worst)",
               message_fields=("response", "overall_score"), to_preference=ultrafeedback_turns,
               accepts=lambda record, fields: isinstance(_maybe_json_list(record.get(fields["completions"])), list)),
        Format("oasst_ranks", ("prompt",), ("prompt",), _as_sft(oasst_ranks_turns),
               "OpenAssistant message tree as a preference pair: rank 0 over the worst-ranked sibling",
               id_field="message_tree_id", accepts=lambda record, fields: is_mapping(record.get(fields["prompt"])),
               to_preference=oasst_ranks_turns),
    )
}

# Order matters: the first format whose required fields a record has wins. Alpaca comes
# before the others because Alpaca-like files often carry extra keys (new_codealpaca has
# both `output` and `response`); an instruction with a `response` instead of an `output`
# (Dolly) is read as Alpaca with output=response, input=context.
DETECTION_ORDER = (
    "preference", "hh_rlhf", "messages", "ultrafeedback", "sharegpt", "alpaca", "oasst_tree", "prompt_completion",
    "query_response", "humaneval", "questions", "reference_answers",
)
# What `read_preferences` detects: an OpenAssistant tree there is read as its ranked pair.
PREFERENCE_ORDER = ("preference", "hh_rlhf", "ultrafeedback", "oasst_ranks")
PREFERENCE_FORMATS = tuple(name for name, fmt in FORMATS.items() if fmt.is_preference)


def parse_field_map(pairs: list[str] | None) -> dict[str, str]:
    """Turn `--field canonical=key` options into a field map."""
    field_map: dict[str, str] = {}
    for pair in pairs or []:
        canonical, sep, key = pair.partition("=")
        canonical, key = canonical.strip(), key.strip()
        if not sep or not canonical or not key:
            raise OptionError(f"--field {pair!r}: expected CANONICAL=KEY, e.g. --field instruction=question")
        field_map[canonical] = key
    return field_map


def detect_format(
    record: Any, field_map: Mapping[str, str], forced: str | None = None, preferences: bool = False
) -> tuple[Format, dict[str, str]]:
    """The format of a record (or the forced one) and its resolved fields; raises RecordProblem when none fits.

    With `preferences`, only preference formats are detected (an OpenAssistant tree as `oasst_ranks`).
    """
    if not is_mapping(record):
        raise RecordProblem(f"record is {kind_of(record)}, expected an object")
    keys = list(record.keys())
    if forced is not None:
        if forced not in FORMATS:
            raise OptionError(f"unknown format {forced!r}; choose one of {', '.join(FORMATS)}")
        return FORMATS[forced], FORMATS[forced].resolve_fields(keys, field_map)
    for name in PREFERENCE_ORDER if preferences else DETECTION_ORDER:
        fields = FORMATS[name].resolve_fields(keys, field_map)
        if FORMATS[name].fits(record, fields):
            return FORMATS[name], fields
    if preferences:
        raise RecordProblem(
            f"no preference format fits a record with keys {', '.join(map(str, keys)) or '(none)'} "
            f"(preference formats: {', '.join(PREFERENCE_FORMATS)}); name it with --format and map fields with --field CANONICAL=KEY"
        )
    lowered = {str(key).lower(): key for key in keys}
    if "instruction" in lowered and "response" in lowered and "output" not in field_map:
        implied = {"output": lowered["response"], **({"input": lowered["context"]} if "context" in lowered else {})}
        fields = FORMATS["alpaca"].resolve_fields(keys, {**implied, **field_map})
        if FORMATS["alpaca"].fits(record, fields):
            return FORMATS["alpaca"], fields
    fields = FORMATS["instructions"].resolve_fields(keys, field_map)
    if FORMATS["instructions"].fits(record, fields):
        return FORMATS["instructions"], fields
    raise RecordProblem(
        f"no known format fits a record with keys {', '.join(map(str, keys)) or '(none)'}; "
        "name it with --format and map fields with --field CANONICAL=KEY"
    )


def other_format(record: Mapping[str, Any], field_map: Mapping[str, str], file_format: Format) -> tuple[Format, dict[str, str]] | None:
    """The format a record is in when it lacks a field of the file's format but holds another one, else None.

    Only formats that, like the file's, have responses (or, like it, have none) and, like it, hold
    preference pairs (or not) count, so that an Alpaca record missing its output is reported as
    that, not read as a bare instruction.
    """
    try:
        fmt, fields = detect_format(record, field_map, preferences=file_format.is_preference)
    except RecordProblem:
        return None
    if (
        fmt.name == file_format.name
        or fmt.has_responses != file_format.has_responses
        or fmt.is_preference != file_format.is_preference
        or not fmt.holds(record, fields)
    ):
        return None
    return fmt, fields

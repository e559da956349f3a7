"""Recipes: a command's options as one YAML file, each key checked against a schema and errors naming its line.

A `RecipeSchema` lists a command's keys (name, aliases, type, default, repeatable); the CLI
derives `select`'s from the command's own options, so that every option has its key. A recipe
is read with the line of every key (`read_recipe`), `--set KEY=VALUE` overrides parse as
YAML scalars (`parse_override`), and `RecipeSchema.resolve` turns both into the command's
parameters, defaults filled in. `write_recipe` records a run's resolved recipe, the sftselect
version and the identities of the models it used, atomically, so that it can be run again.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from sftselect._version import __version__
from sftselect.errors import OptionError

# Keys a written recipe records about the run that made it: read back, never applied.
VERSION_KEY = "sftselect"
MODELS_KEY = "models"
TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


@dataclass(frozen=True)
class Setting:
    """A value given for a key, and where it was given (`R.yaml, line 3` or `--set keep`)."""

    value: Any
    where: str


@dataclass(frozen=True)
class RecipeKey:
    """One key: the parameter it sets, its other accepted names, its type, its default, whether it takes a list."""

    name: str
    parameter: str
    type: type
    default: Any = None
    multiple: bool = False
    required: bool = False
    aliases: tuple[str, ...] = ()

    def convert(self, setting: Setting) -> Any:
        """The value as the parameter takes it, or an error naming the key and where it was given."""
        value = setting.value
        if value is None:
            if self.default is None and not self.required:
                return None
            raise OptionError(f"{setting.where}: {self.name} needs a value ({self.describe()})")
        if self.multiple:
            items = value if isinstance(value, list) else [value]
            return [self._scalar(item, setting) for item in items] or None
        return self._scalar(value, setting)

    def describe(self) -> str:
        """What the key takes, in words."""
        return f"a list of {TYPE_NAMES[self.type]}" if self.multiple else TYPE_NAMES[self.type]

    def _scalar(self, value: Any, setting: Setting) -> Any:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.type is bool and isinstance(value, bool):
            return value
        if self.type is int and number and float(value).is_integer():
            return int(value)
        if self.type is float and number:
            return float(value)
        if self.type is str and (isinstance(value, str) or number):
            # A command line gives every value as text: `keep: 0.1` is the flag's `--keep 0.1`.
            return str(value)
        raise OptionError(f"{setting.where}: {self.name} takes {self.describe()}, got {json.dumps(value, default=str)}")


@dataclass(frozen=True)
class RecipeSchema:
    """The keys of one command, in the order its recipes are written."""

    command: str
    keys: tuple[RecipeKey, ...]

    def key(self, name: str, where: str) -> RecipeKey:
        """The key called `name` (or one of its aliases); an unknown name is an error naming it and where."""
        for key in self.keys:
            if name == key.name or name in key.aliases:
                return key
        names = [key.name for key in self.keys]
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; the keys are those of `sftselect {self.command} --help`"
        raise OptionError(f"{where}: unknown key {name!r}{hint}")

    def given(self, *layers: Mapping[str, Setting]) -> dict[str, tuple[RecipeKey, Setting]]:
        """The keys given, by their names, each with its setting; a later layer (the overrides) wins."""
        given: dict[str, tuple[RecipeKey, Setting]] = {}
        for settings in layers:
            named: dict[str, str] = {}
            for name, setting in settings.items():
                if name in (VERSION_KEY, MODELS_KEY):
                    continue
                key = self.key(name, setting.where)
                if key.name in named:
                    raise OptionError(f"{setting.where}: {name} sets the same option as {named[key.name]}; give one of them")
                named[key.name] = name
                given[key.name] = (key, setting)
        return given

    def resolve(self, source: str, recipe: Mapping[str, Setting], overrides: Mapping[str, Setting] = {}) -> dict[str, Any]:
        """Every parameter with its value: the overrides', else the recipe's (read from `source`), else the default."""
        given = self.given(recipe, overrides)
        values = {}
        for key in self.keys:
            if key.name in given:
                values[key.parameter] = key.convert(given[key.name][1])
            elif key.required:
                raise OptionError(f"{source}: the key {key.name!r} is required (or --set {key.name}=...)")
            else:
                values[key.parameter] = key.default
        return values

    def settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter values as recipe keys, in schema order (the inverse of `resolve`)."""
        return {key.name: _plain(values.get(key.parameter, key.default)) for key in self.keys}


def read_recipe(path: str | os.PathLike) -> dict[str, Setting]:
    """A recipe's top-level keys with their values and lines; a missing file, bad YAML or a repeated key is an error."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise OptionError(f"cannot read the recipe {source}: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise OptionError(f"{source}: not a text file ({error.reason})") from error
    return recipe_settings(text, str(source))


def recipe_settings(text: str, source: str, section: str | None = None) -> dict[str, Setting]:
    """The keys of a YAML mapping (or of its mapping under `section`) with their values and where each was given."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise OptionError(f"{source}: the recipe is empty; give its settings as `key: value` lines")
        if section is not None:
            node = next((value for key, value in _pairs(node, source) if key.value == section), None)
            if node is None:
                return {}
        settings: dict[str, Setting] = {}
        for key_node, value_node in _pairs(node, source, section):
            where = f"{source}, line {key_node.start_mark.line + 1}"
            name = loader.construct_object(key_node, deep=True)
            if not isinstance(name, str):
                raise OptionError(f"{where}: a key must be text, got {name!r}")
            if name in settings:
                raise OptionError(f"{where}: {name} is given twice (also at {settings[name].where})")
            settings[name] = Setting(loader.construct_object(value_node, deep=True), where)
        return settings
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise OptionError(f"{source}{line}: not valid YAML ({getattr(error, 'problem', None) or error})") from error
    finally:
        loader.dispose()


def _pairs(node: Any, source: str, section: str | None = None) -> list[tuple[Any, Any]]:
    """A mapping node's (key node, value node) pairs; any other node is an error naming its line."""
    import yaml

    if not isinstance(node, yaml.MappingNode):
        what = f"{section} is" if section else "a recipe is"
        raise OptionError(f"{source}, line {node.start_mark.line + 1}: {what} a mapping of `key: value` settings")
    return node.value


def parse_override(text: str) -> tuple[str, Setting]:
    """`KEY=VALUE` of `--set`: the value read as a YAML scalar (`true`, `0.9`, `10%`, `[a, b]`)."""
    import yaml

    name, separator, value = text.partition("=")
    name = name.strip()
    if not separator or not name:
        raise OptionError(f"--set {text}: give KEY=VALUE, e.g. --set keep=5%")
    where = f"--set {name}"
    try:
        return name, Setting(yaml.safe_load(value) if value.strip() else None, where)
    except yaml.YAMLError as error:
        raise OptionError(f"{where}: {value!r} is not a YAML value ({getattr(error, 'problem', None) or error})") from error


def recipe_path(output: str | os.PathLike) -> Path:
    """Where a run's recipe is written: beside its output, named after it (`OUT.recipe.yaml`)."""
    output = Path(output)
    return output.with_name(output.name + ".recipe.yaml")


def write_recipe(
    path: str | os.PathLike, schema: RecipeSchema, values: Mapping[str, Any], models: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Write the resolved recipe of a run, the sftselect version and its models' identities (checked earlier as an output)."""
    import yaml

    from sftselect.io.atomic import atomic_text, check_destination

    path = Path(path)
    check_destination(path, None, overwrite)
    header = (
        f"# The recipe of this {schema.command}: every option with its value. Re-run it exactly with\n"
        f"#   sftselect run {path.name} --set output=OTHER    (or --overwrite)\n"
        f"# from the folder its relative paths start from: {Path.cwd()}\n"
    )
    content = {VERSION_KEY: __version__, **schema.settings(values), MODELS_KEY: _plain(dict(models))}
    body = yaml.safe_dump(content, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    with atomic_text(path) as handle:
        handle.write(header + body)
    return path


def _plain(value: Any) -> Any:
    """Plain YAML data: tuples become lists and anything else unusual its text."""
    return json.loads(json.dumps(value, default=str))

"""Named factories (of scorers, selectors, embedders) whose keyword parameters are the options they accept.

A factory is registered with `@registry.register(name)`; other packages add theirs through
an entry-point group (for scorers `sftselect.scorers`), loaded only when its name is used.
`create(name, ...)` passes options to the factory and rejects one it does not take, naming
the option and the factory, so a misspelt option is an error rather than silently ignored.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, TypeVar

from sftselect.errors import OptionError

Factory = TypeVar("Factory", bound=Callable[..., Any])


class Registry:
    """Factories by name: the built-in ones registered on import, plugins from `group` on first use."""

    def __init__(self, kind: str, group: str | None = None):
        self.kind = kind
        self.group = group
        self._factories: dict[str, Callable[..., Any]] = {}
        self._extras: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **extras: Any) -> Callable[[Factory], Factory]:
        """Decorator registering a factory under `name`; `extras` are kept beside it (see `extra`)."""

        def decorate(factory: Factory) -> Factory:
            parameters = inspect.signature(factory).parameters.values()
            if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
                raise TypeError(f"{self.kind} {name!r}: a factory names its options; it may not take **kwargs")
            if self._factories.get(name, factory) is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            self._extras[name] = extras
            return factory

        return decorate

    def _plugins(self) -> dict[str, Any]:
        if self.group is None:
            return {}
        from importlib.metadata import entry_points

        return {point.name: point for point in entry_points(group=self.group) if point.name not in self._factories}

    def names(self) -> list[str]:
        """Every registered name, built in and from plugins, sorted."""
        return sorted([*self._factories, *self._plugins()])

    def factory(self, name: str) -> Callable[..., Any]:
        """The factory of `name`, loading its plugin if it comes from one."""
        if name not in self._factories:
            point = self._plugins().get(name)
            if point is None:
                raise OptionError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
            loaded = point.load()
            # A plugin module registers its factory on import; an entry point may also name a bare factory.
            if name not in self._factories:
                self.register(name)(loaded)
        return self._factories[name]

    def extra(self, name: str, key: str, default: Any = None) -> Any:
        """A value given to `register` for `name` (a method's preset, say), or `default`."""
        self.factory(name)
        return self._extras[name].get(key, default)

    def options(self, name: str) -> list[str]:
        """The keyword options the factory of `name` takes."""
        parameters = inspect.signature(self.factory(name)).parameters.values()
        return [parameter.name for parameter in parameters if parameter.kind is inspect.Parameter.KEYWORD_ONLY]

    def accepted(self, name: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """The options among `options` that `name` takes (for settings shared by several factories)."""
        taken = self.options(name)
        return {key: value for key, value in options.items() if key in taken}

    def create(self, name: str, *arguments: Any, **options: Any) -> Any:
        """Call the factory of `name`; an option it does not take is an error naming both."""
        factory = self.factory(name)
        unknown = sorted(set(options) - set(self.options(name)))
        if unknown:
            taken = ", ".join(self.options(name)) or "none"
            raise OptionError(f"the {name} {self.kind} takes no option {', '.join(map(repr, unknown))}; its options: {taken}")
        return factory(*arguments, **options)

    def description(self, name: str) -> str:
        """The first line of the factory's docstring."""
        return (inspect.getdoc(self.factory(name)) or "").partition("\n")[0]

"""The engines a command can ask for by name (`--engine`)."""

from __future__ import annotations

from sftselect.engine.local import LocalEngine
from sftselect.engine.ray_engine import RayEngine
from sftselect.errors import OptionError
from sftselect.store import ScoreCache

ENGINES = ("local", "ray")


def get_engine(
    name: str = "local",
    ray_address: str | None = None,
    cache: ScoreCache | None = None,
    chunk_size: int | None = None,
) -> LocalEngine | RayEngine:
    """The engine a command asked for with --engine (and --ray-address)."""
    if name == "local":
        if ray_address:
            raise OptionError("--ray-address needs --engine ray")
        return LocalEngine(cache, chunk_size)
    if name == "ray":
        return RayEngine(ray_address, cache, chunk_size)
    raise OptionError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")

"""`sftselect cache`: inspect or empty the score cache."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

from sftselect.cli.options import CachePathOption

app = typer.Typer(
    help="Inspect or empty the score cache (scores and embeddings kept so re-runs compute only new records).",
    no_args_is_help=True,
)


@app.command("info")
def cache_info(
    cache_path: CachePathOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON instead of a table."),
) -> None:
    """Show where the cache is, its size, and how many entries each scorer or embedder holds."""
    from sftselect.engine.cache import ScoreCache, describe_info

    info = ScoreCache(cache_path).info()
    if as_json:
        import json

        print(json.dumps(info, indent=2))
        return
    Console().print(describe_info(info))


@app.command("clear")
def cache_clear(
    cache_path: CachePathOption = None,
    namespace: Optional[str] = typer.Option(
        None, "--namespace", help="Remove only this namespace (its id, or a prefix of it, as `cache info` shows)."
    ),
) -> None:
    """Remove cached entries: all of them, or one scorer's or embedder's (--namespace)."""
    from sftselect.engine.cache import ScoreCache, resolve_namespace

    cache = ScoreCache(cache_path)
    target = resolve_namespace(cache, namespace) if namespace else None
    removed = cache.clear(target)
    print(f"removed {removed} entries from {cache.path}")

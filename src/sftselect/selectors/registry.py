"""Selector names to factories: the way to build a selector from options, built in or from a plugin.

Other packages add selectors under the `sftselect.selectors` entry-point group (see
docs/architecture.md); a factory's keyword parameters are the options it takes.
"""

from __future__ import annotations

from sftselect.errors import OptionError
from sftselect.registration import Registry
from sftselect.selectors.base import BudgetSelector, Selector
from sftselect.selectors.diversity import DEFAULT_THRESHOLD, DiversityFilter
from sftselect.selectors.ranking import MinScore, TopFraction, TopK, parse_keep

SELECTORS = Registry("selector", "sftselect.selectors")
register_selector = SELECTORS.register


@register_selector("top")
def _top(*, top: int) -> TopK:
    """The `top` best-scored records."""
    return TopK(int(top))


@register_selector("keep")
def _keep(*, keep: str | float) -> TopFraction:
    """The best-scored share: a percentage such as "10%", or a fraction."""
    return parse_keep(keep) if isinstance(keep, str) else TopFraction(float(keep))


@register_selector("min-score")
def _min_score(*, min_score: float) -> MinScore:
    """Every record scoring at least `min_score`."""
    return MinScore(float(min_score))


@register_selector("diversity")
def _diversity(
    *, within: BudgetSelector | None = None, threshold: float = DEFAULT_THRESHOLD, block_size: int = 1024, device: str | None = None
) -> DiversityFilter:
    """deita's filter: best first, skipping a record more similar than `threshold` to one kept, within a budget selector."""
    return DiversityFilter(threshold, within, block_size, device)


def budget_selector(keep: str | float | None = None, top: int | None = None, min_score: float | None = None) -> BudgetSelector:
    """The budget selector for exactly one of `keep`, `top` and `min_score`."""
    given = {name: value for name, value in (("keep", keep), ("top", top), ("min_score", min_score)) if value is not None}
    if len(given) != 1:
        which = " and ".join("{" + name + "}" for name in given) or "none"
        raise OptionError(
            f"give exactly one of {{keep}}, {{top}} and {{min_score}} (got {which})", options=("keep", "top", "min_score")
        )
    (name, value), = given.items()
    return SELECTORS.create(name.replace("_", "-"), **{name: value})


def selector_for(budget: BudgetSelector, diversity: float | None = None, device: str | None = None) -> Selector:
    """`budget` itself, or deita's diversity filter within it when a `diversity` threshold is given."""
    if diversity is None:
        return budget
    return SELECTORS.create("diversity", within=budget, threshold=diversity, device=device)

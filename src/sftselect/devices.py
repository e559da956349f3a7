"""Where models run: the one place that picks a device when the user names none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sftselect.errors import OptionError

if TYPE_CHECKING:
    import torch


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_device(device: str | torch.device | None) -> torch.device:
    """The device a user named (cpu, cuda, cuda:N), or `default_device()` when they named none."""
    import torch

    if device is None:
        return default_device()
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise OptionError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from error

"""`python -m sftselect.cli`: the same as the `sftselect` script."""

from sftselect.cli import main

main()

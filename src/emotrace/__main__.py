"""``python -m emotrace`` is the ``emotrace`` command."""

from emotrace.cli import main

main()

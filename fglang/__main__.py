"""``python -m fglang ...`` is the ``fglang`` command."""

from fglang.cli import main

main()

"""``python -m pkgline``: the same as the ``pkgline`` command."""

from pkgline.cli import main

main()

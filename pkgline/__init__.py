"""pkgline: equipment control and lot tracking for a semiconductor packaging line.

This package is the composition root (configuration, bootstrap, CLI, daemon) plus one leaf
utility, :mod:`pkgline.datafiles`, that the other packages use to read their data files.
It imports nothing at package level so that ``import pkgline.datafiles`` stays cheap.
"""

__version__ = "0.1.0"

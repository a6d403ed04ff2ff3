"""The lot tracker's rules: pure Python, no I/O. See :mod:`mes.domain.operations`."""

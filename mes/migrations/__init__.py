"""Alembic migrations of the lot tracker's schema (run with ``pkgline db upgrade``)."""

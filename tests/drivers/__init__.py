"""Tests of the equipment drivers."""

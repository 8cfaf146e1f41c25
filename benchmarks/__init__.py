"""Reproducible performance runs that print JSON."""

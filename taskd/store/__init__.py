"""The store: the only package that speaks SQL."""

from taskd.store.db import Store

__all__ = ["Store"]

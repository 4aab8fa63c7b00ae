"""taskd: a self-hosted job scheduler for small teams."""

__version__ = "0.1.0"

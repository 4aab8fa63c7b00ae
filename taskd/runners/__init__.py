"""Runner backends behind one small interface (see ``base``)."""

from taskd.runners.base import RUNNERS, AttemptContext, Runner, Started, StartFailed

__all__ = ["RUNNERS", "AttemptContext", "Runner", "StartFailed", "Started"]

"""Output capture: what a reader gets back is the head, one marked gap, and the tail."""

from __future__ import annotations

import asyncio

from taskd.models import TaskTemplate
from taskd.output import OutputWriter
from taskd.store import output as output_q
from tests.core.test_engine import finished, plan, rows, sh


async def test_flushes_that_overlap_still_leave_one_gap(services):
    # An attempt to write into (its own job printed nothing).
    run = await services.engine.submit(plan(TaskTemplate("quiet", sh("true"))))
    await finished(run)
    [attempt] = await rows(services, "SELECT id FROM attempts")
    sink = OutputWriter(services.store, attempt["id"], head=10, tail=100)

    sink.write("stdout", b"a" * 1000)
    first = asyncio.create_task(sink.flush())  # the timer's flush, say
    await asyncio.sleep(0)  # it is now waiting for its commit
    sink.write("stdout", b"b" * 1000)
    await sink.flush()  # the end of the attempt flushes what is left meanwhile
    await first

    text = (await services.store.read(output_q.text_of, [attempt["id"]], "stdout"))[attempt["id"]]
    head, marker, rest = text.partition("\n[taskd: ")
    assert head == "a" * 10
    assert marker and "[taskd: " not in rest  # exactly one gap
    dropped = int(rest.split(" ", 1)[0])
    kept = rest.split("dropped here]\n", 1)[1]
    assert kept == "b" * len(kept) and 100 <= len(kept) < 200
    assert len(head) + dropped + len(kept) == 2000

"""What ``taskd serve`` writes to stderr: one line per event with its fields, human or JSON."""

from __future__ import annotations

import json
import re

from tests.server import Server


async def test_human_lines_name_the_level_the_event_and_its_fields(tmp_path):
    srv = Server(tmp_path)
    await srv.start()
    srv.stop()
    line = next(x for x in srv.log().splitlines() if "taskd serving" in x)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(rf"{stamp} \[info +\] taskd serving +url={srv.url} db=\S+", line), line


async def test_json_lines_are_one_object_each_with_time_level_event_and_fields(tmp_path):
    srv = Server(tmp_path, "--log-format", "json")
    await srv.start()
    srv.stop()
    events = [json.loads(x) for x in srv.log().splitlines() if x.startswith("{")]
    serving = next(e for e in events if e["event"] == "taskd serving")
    assert serving["level"] == "info" and serving["url"] == srv.url
    assert serving["db"].endswith("taskd.db") and serving["timestamp"].endswith("Z")
    assert all(x.startswith("{") for x in srv.log().splitlines() if x.strip()), srv.log()


async def test_a_higher_log_level_leaves_out_the_info_lines(tmp_path):
    srv = Server(tmp_path, "--log-level", "warning")
    await srv.start()
    srv.stop()
    assert "taskd serving" not in srv.log() and "[info" not in srv.log(), srv.log()

"""A stage's ``warm`` (imports started in the background before the stage runs) and the cores it kept busy."""

from __future__ import annotations

import os
import sys
import time
from types import SimpleNamespace

from issuerisk.stage import Preload, preload


def test_preload_imports_each_named_module_in_a_thread_and_leaves_errors_to_the_stage():
    sys.modules.pop("tabnanny", None)
    loaded = Preload("tabnanny")
    loaded._thread.join(timeout=30)
    assert "tabnanny" in sys.modules  # a tuple of names, not the letters of one name

    missing = Preload("issuerisk_no_such_module", "colorsys")
    missing._thread.join(timeout=30)  # ends quietly; the stage's own import names the error
    assert "issuerisk_no_such_module" not in sys.modules


def test_preload_leaves_its_handle_under_the_stage_name():
    ctx = SimpleNamespace(warmed={})
    preload("topics", "json")(ctx)
    ctx.warmed["topics"]._thread.join(timeout=30)
    ctx.warmed.pop("topics").close()
    assert ctx.warmed == {}


def test_cores_busy_counts_the_machines_busy_ticks_while_a_process_works():
    from issuerisk.stage import cores_busy, cpu_ticks

    assert cores_busy((100, 200), (150, 300)) == round(0.5 * (os.cpu_count() or 1), 2)
    assert cores_busy(None, (1, 2)) is None and cores_busy((5, 10), (5, 10)) is None  # no /proc, no time passed
    before = sum(i * i for i in range(10))
    start = cpu_ticks()
    deadline = time.perf_counter() + 0.5
    while time.perf_counter() < deadline:  # one core kept busy
        before += 1
    busy = cores_busy(start, cpu_ticks())
    assert busy is not None and 0.5 <= busy <= (os.cpu_count() or 1) + 0.01

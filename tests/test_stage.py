"""A stage's ``warm``: imports started in the background before the stage runs."""

from __future__ import annotations

import sys
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

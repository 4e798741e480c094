"""The public API: every exported name resolves, and the labs load only when used."""

import subprocess
import sys


def test_every_exported_name_resolves():
    import lenslab

    for name in lenslab.__all__:
        assert getattr(lenslab, name) is not None, name


def test_import_lenslab_does_not_load_the_labs():
    code = ("import sys, lenslab; bad = [m for m in ('lenslab.scaling.fit', 'transformers', "
            "'lenslab.attention.heads') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

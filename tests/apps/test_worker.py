"""`python -m medunet.apps.worker`: a long-lived medunet segment answering JSON lines, as apps/monailabel runs it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medunet.apps.segment import segment
from medunet.apps.worker import answer, serve
from tests.apps.test_segment import bundle, images  # noqa: F401  (module fixtures: a tiny bundle, two images)


def test_the_worker_process_answers_requests_as_medunet_segment_and_survives_bad_ones(
    bundle: Path,  # noqa: F811
    images: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = subprocess.Popen([sys.executable, "-m", "medunet.apps.worker"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:

        def ask(request: object) -> dict:
            assert worker.stdin is not None
            assert worker.stdout is not None
            worker.stdin.write((request if isinstance(request, str) else json.dumps(request)) + "\n")
            worker.stdin.flush()
            return json.loads(worker.stdout.readline())

        settings = {"device": "cpu"}
        first = ask({"model": str(bundle), "input": str(images / "cells0.png"), "output": str(tmp_path / "a"),
                     "settings": settings})  # fmt: skip
        assert "error" not in first, first
        assert {Path(p).name for p in first["outputs"]} >= {"cells0_seg.png", "cells0_instances.png"}
        bad = ask({"model": "no_such_model", "input": str(images / "cells0.png"), "output": str(tmp_path / "b")})
        assert bad["error"].startswith("medunet segment: --model no_such_model: not a shipped model")
        assert ask("{not json")["error"].startswith("not a JSON request")
        assert "error" in ask({"model": str(bundle)})
        again = ask({"model": str(bundle), "input": str(images / "cells1.png"), "output": str(tmp_path / "c"),
                     "settings": settings})  # fmt: skip
        assert "error" not in again, again
    finally:
        assert worker.stdin is not None
        worker.stdin.close()
        assert worker.wait(timeout=60) == 0  # the end of input ends it
    segment(bundle, images / "cells1.png", tmp_path / "cli", settings=settings, progress=False)
    served = np.asarray(Image.open(tmp_path / "c" / "cells1_seg.png"))
    np.testing.assert_array_equal(served, np.asarray(Image.open(tmp_path / "cli" / "cells1_seg.png")))


def test_requests_are_checked_before_any_work() -> None:
    assert "error" in answer(["nuclei"])
    assert "error" in answer({"model": "nuclei", "input": "a.png", "output": "out", "settings": [1]})
    replies = io.StringIO()
    serve(io.StringIO('\n{"model": 1}\n'), replies)
    assert [json.loads(line) for line in replies.getvalue().splitlines()] == [
        {"error": 'a request is a JSON object with "model", "input" and "output" strings (and "settings")'}
    ]

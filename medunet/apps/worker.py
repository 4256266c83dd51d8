"""A long-lived ``medunet segment`` for servers that run in another environment (``apps/monailabel``): one process
imports medunet and MONAI once (12 s on 2 AVX2 cores, nearly all of it MONAI) and then segments on request.

``python -m medunet.apps.worker`` reads one JSON request per line on its standard input::

    {"model": "nuclei", "input": "/data/a.png", "output": "/tmp/out", "settings": {"device": "cpu"}}

runs :func:`medunet.apps.segment.segment` on it (``model``: a shipped model's name or a bundle folder; ``settings``
as ``medunet segment --override``) and answers with one JSON line on its standard output: ``{"outputs": [...]}``
(the files written, as ``medunet segment`` writes them), or ``{"error": "..."}`` with the message ``medunet segment``
would print; the worker then waits for the next request. Everything else the process prints (logs, warnings,
progress) goes to its standard error, so the answers stay one line each. End of input ends the worker.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, Any

from medunet.apps.segment import segment

__all__ = ["answer", "serve"]

logger = logging.getLogger(__name__)


def answer(request: Any) -> dict[str, Any]:
    """The reply to one decoded request (never raises for bad input: the error is the reply)."""
    if not isinstance(request, dict) or not all(isinstance(request.get(k), str) for k in ("model", "input", "output")):
        return {"error": 'a request is a JSON object with "model", "input" and "output" strings (and "settings")'}
    settings = request.get("settings") or {}
    if not isinstance(settings, dict):
        return {"error": f'"settings" must be a JSON object of bundle settings, got {settings!r}'}
    try:
        report = segment(request["model"], request["input"], request["output"], settings=settings, progress=False)
    except (ValueError, FileNotFoundError) as err:  # what `medunet segment` reports as its message
        return {"error": f"medunet segment: {err}"}
    except Exception as err:  # a failure inside the pipeline: reported, and the worker serves on
        logger.exception("request %s failed", request)
        return {"error": f"medunet segment: {type(err).__name__}: {err}"}
    return {"outputs": [path for paths in report.outputs.values() for path in paths]}


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answers each line of ``requests`` with one line on ``replies`` until the end of ``requests``."""
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as err:
            reply: dict[str, Any] = {"error": f"not a JSON request ({err})"}
        else:
            reply = answer(request)
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    # Replies get the original standard output; anything printed (by medunet, MONAI or a library) goes to standard
    # error, so that no stray line is read as an answer.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())

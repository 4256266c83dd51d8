"""Rank and device of a process, with and without ``torchrun``'s environment (the two-process runs themselves
are in tests/bundles/test_distributed.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medunet.engines import default_device, gather_inference_summary, is_not_rank0, process_rank, run_inference_shard


def test_rank_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    assert process_rank() == 0
    assert is_not_rank0() is False
    monkeypatch.setenv("RANK", "3")
    assert process_rank() == 3
    assert is_not_rank0() is True


def test_default_device_uses_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda:1")


def test_single_process_summary_and_empty_shard(tmp_path: Path) -> None:
    class Evaluator:
        runs = 0

        def run(self) -> None:
            self.runs += 1

    evaluator = Evaluator()
    run_inference_shard(evaluator, [], tmp_path)
    assert evaluator.runs == 0  # a rank without cases does not run
    run_inference_shard(evaluator, [{"image": "a"}, {"image": "b"}], tmp_path)
    assert evaluator.runs == 1
    summary = json.loads((tmp_path / "inference_summary.json").read_text())
    assert summary == {"ranks": 1, "cases": 2, "duplicates": [], "per_rank": {"0": ["a", "b"]}}
    assert gather_inference_summary(tmp_path, [{"image": "a"}, {"image": "a"}])["duplicates"] == ["a"]

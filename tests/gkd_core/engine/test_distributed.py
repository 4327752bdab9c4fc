"""Data parallelism on CPU with gloo: 2 torchrun ranks take the same steps as one process.

One torchrun launch (2 ranks) runs every 2-rank part; the 1-process parts run in this process:

- equal: 4 steps on 2 ranks == 4 steps in one process (same global batch of 8, same data), losses and
  student weights within 1e-5. Masking is off here (mask_probability=0): with masking, each rank
  masks the first half of *its own* batch, which is another set of images than one process masks;
- masking rule: with mask_probability 0.5 each rank masks rows 0-1 of its 4-image batch, i.e. global
  positions {0, 1, 4, 5}, where one process masks {0, 1, 2, 3};
- resume at another world size: a checkpoint written at step 2 (mid-epoch) by 2 ranks resumes in one
  process, and one written by one process resumes on 2 ranks; both end where the unbroken run ends
  and read exactly the image ids the unbroken run read at every later step.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gkd_core.engine import StepBatches, distributed
from gkd_core.models import build_backbone
from tests.gkd_core.engine import _ddp_stage1
from tests.gkd_core.models.tiny import tiny_student

REPO = Path(__file__).resolve().parents[3]
STEPS = 4
LR = _ddp_stage1.LR


def _torchrun(out: Path, *scenarios: str, nproc: int = 2) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "tests.gkd_core.engine._ddp_stage1", str(out), *scenarios]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _load(path: Path) -> dict[str, Any]:
    found: dict[str, Any] = torch.load(path, weights_only=True)
    return found


def _assert_same(ref: dict[str, Any], got: dict[str, Any], steps: range) -> None:
    for step in steps:
        assert got["losses"][step] == pytest.approx(ref["losses"][step], abs=1e-5, rel=0), step
    assert ref["weights"].keys() == got["weights"].keys()
    for name, value in ref["weights"].items():
        mine = got["weights"][name]
        if name.endswith("attn.qkv.bias"):
            # The key bias has an exactly zero gradient (softmax ignores a shift shared by all keys), so
            # what AdamW sees there is rounding noise, normalised into lr-sized steps in any run.
            width = value.numel() // 3
            torch.testing.assert_close(mine[width : 2 * width], value[width : 2 * width], atol=10 * LR, rtol=0)
            mine, value = torch.cat([mine[:width], mine[2 * width :]]), torch.cat([value[:width], value[2 * width :]])
        torch.testing.assert_close(mine, value, atol=1e-5, rtol=0, msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the ranks; put back afterwards (other tests compare bit for bit)
    try:
        return _all_runs(out)
    finally:
        torch.set_num_threads(threads)


def _all_runs(out: Path) -> dict[str, dict[str, Any]]:
    one = {
        "ref": _ddp_stage1.run(out / "ref", steps=STEPS),
        "masked_1": _ddp_stage1.run(out / "masked_1", steps=1, mask_probability=0.5),
        "stop_1": _ddp_stage1.run(out / "stop_1", steps=STEPS, stop_at=2),
    }
    # One launch, three 2-rank scenarios: unbroken, stopped at step 2, and resuming one process's checkpoint.
    (out / "resume_on_2").mkdir()
    for file in (out / "stop_1").iterdir():
        (out / "resume_on_2" / file.name).write_bytes(file.read_bytes())
    _torchrun(out, f"ddp:{STEPS}:0:0", f"stop_2:{STEPS}:2:0", f"resume_on_2:{STEPS}:0:0", "masked_2:1:0:0.5")
    two = {name: _load(out / f"{name}.pt") for name in ("ddp", "stop_2", "resume_on_2", "masked_2")}
    one["resume_on_1"] = _ddp_stage1.run(out / "stop_2", steps=STEPS)
    return {**one, **two}


def test_two_ranks_take_the_same_steps_as_one_process(runs: dict[str, dict[str, Any]]) -> None:
    assert sorted(runs["ddp"]["losses"]) == list(range(1, STEPS + 1))
    _assert_same(runs["ref"], runs["ddp"], range(1, STEPS + 1))
    torch.manual_seed(0)  # the initial weights (as _ddp_stage1.run builds them): training moved them
    start = build_backbone(tiny_student(32)).state_dict()
    moved = max((runs["ref"]["weights"][k] - v).abs().max().item() for k, v in start.items())
    assert moved > 1e-4


def test_each_rank_masks_the_first_half_of_its_own_batch(runs: dict[str, dict[str, Any]]) -> None:
    (single,) = runs["masked_1"]["masks"]
    assert single == [[8, 0, 1, 2, 3]]  # one process: the first half of the global batch of 8
    per_rank = runs["masked_2"]["masks"]
    assert per_rank == [[[4, 0, 1]], [[4, 0, 1]]]  # each rank: the first half of its batch of 4
    global_rows = {rank * 4 + row for rank, calls in enumerate(per_rank) for row in calls[0][1:]}
    assert global_rows == {0, 1, 4, 5}


def test_two_rank_checkpoint_resumes_in_one_process(runs: dict[str, dict[str, Any]]) -> None:
    assert runs["stop_2"]["steps_done"] == 2
    resumed = runs["resume_on_1"]
    assert sorted(resumed["losses"]) == [3, 4]
    assert any("resumed from step 2" in e and "written by 2 rank(s), continued on 1" in e for e in resumed["events"])
    _assert_same(runs["ref"], resumed, range(3, STEPS + 1))


def test_one_process_checkpoint_resumes_on_two_ranks(runs: dict[str, dict[str, Any]]) -> None:
    assert runs["stop_1"]["steps_done"] == 2
    resumed = runs["resume_on_2"]
    assert sorted(resumed["losses"]) == [3, 4]
    assert any("written by 1 rank(s), continued on 2" in e for e in resumed["events"])
    _assert_same(runs["ref"], resumed, range(3, STEPS + 1))


def _ids_by_step(run: dict[str, Any], first_step: int) -> dict[int, list[int]]:
    """Global batch ids by step: each rank's reads cut into its local batches, ranks concatenated."""
    per_rank = run["ids"]
    local = _ddp_stage1.GLOBAL_BATCH // len(per_rank)
    steps = len(per_rank[0]) // local
    return {
        first_step + s: [i for ids in per_rank for i in ids[s * local : (s + 1) * local]] for s in range(steps)
    }


def test_resumed_runs_read_the_images_of_the_unbroken_run(runs: dict[str, dict[str, Any]]) -> None:
    ref = _ids_by_step(runs["ref"], 1)
    assert sorted(ref[1] + ref[2] + ref[3]) == list(range(24))  # epoch 0 is steps 1-3, epoch 1 starts at 4
    assert _ids_by_step(runs["ddp"], 1) == ref
    for name in ("resume_on_1", "resume_on_2"):  # checkpoint at step 2 (mid-epoch 0), resumed elsewhere
        resumed = _ids_by_step(runs[name], 3)
        assert resumed == {s: ref[s] for s in resumed} and set(resumed) >= {3, 4}, name


def test_rank_shards_cover_each_global_batch_once() -> None:
    data = list(range(10))
    whole = StepBatches(data, 4, seed=1, collate_fn=list, rank=0, world_size=1)
    shards = [StepBatches(data, 4, seed=1, collate_fn=list, rank=r, world_size=2) for r in (0, 1)]
    assert shards[0].steps_per_epoch == whole.steps_per_epoch == 2
    it_whole, it_shards = whole(3), [s(3) for s in shards]  # from step 3: mid epoch 1
    for _ in range(4):
        assert next(it_shards[0]) + next(it_shards[1]) == next(it_whole)


def test_a_global_batch_that_does_not_split_is_refused() -> None:
    with pytest.raises(ValueError, match="does not split evenly over 4 ranks"):
        StepBatches(list(range(12)), 6, rank=0, world_size=4)


def test_without_a_process_group_everything_is_one_rank() -> None:
    found = (distributed.rank(), distributed.world_size(), distributed.is_main(), distributed.active())
    assert found == (0, 1, True, False)
    assert distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.mean_over_ranks({"a": 2.0}) == {"a": 2.0}
    assert distributed.rank_seed(7, 0) == 7 and distributed.rank_seed(7, 1) != distributed.rank_seed(7, 2)

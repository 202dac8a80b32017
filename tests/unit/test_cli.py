"""`prelabel annotate` paths that need no real router: the _SUCCESS short cut, empty shards,
parameter and lock guards, exit codes, and the Kubernetes Job's exact argv."""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
from pathlib import Path

import grpc
import pytest
import yaml

from prelabel.annotate import (
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_REJECTED,
)
from prelabel.cli import COMMANDS, build_parser, main
from prelabel.formats.coco import file_path as coco_file
from prelabel.inputs import shard_of
from services.embedded_triton.launcher import free_port
from tests.unit.annotate_runs import annotate, photos, start_annotate
from tests.unit.prelabeler_double import PreLabelerDouble, serve
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
NO_ROUTER = "127.0.0.1:1"  # nothing listens there: any attempt to call it would fail


def test_annotate_exits_zero_touching_nothing_when_the_shard_is_complete_and_up_to_date(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg"])
    other = (shard_of(str(folder / "a.jpg"), 2) + 1) % 2  # a shard with no image: no router needed
    out = tmp_path / "out"
    args = ["annotate", str(folder), "--out", str(out), "--router", NO_ROUTER, "--no-progress",
            "--shard-index", str(other), "--shard-count", "2"]
    assert main(args) == EXIT_OK
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(args) == EXIT_OK
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes


def test_annotate_rewrites_the_outputs_when_a_complete_shard_is_run_with_other_output_flags(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg"])
    other = (shard_of(str(folder / "a.jpg"), 2) + 1) % 2
    out = tmp_path / "out"
    args = ["annotate", str(folder), "--out", str(out), "--router", NO_ROUTER, "--no-progress",
            "--shard-index", str(other), "--shard-count", "2"]
    assert main(args + ["--formats", "coco"]) == EXIT_OK
    assert not (out / "labelstudio.json").exists()
    assert main(args + ["--formats", "coco,labelstudio"]) == EXIT_OK
    assert (out / "labelstudio.json").exists()
    assert json.loads((out / "_SUCCESS").read_text())["outputs"]["formats"] == ["coco", "labelstudio"]


def test_annotate_completes_shard_when_no_image_hashes_to_it(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg"])
    image_id = str(folder / "a.jpg")
    other = (shard_of(image_id, 2) + 1) % 2
    out = tmp_path / "out"
    code = main(["annotate", str(folder), "--out", str(out), "--router", NO_ROUTER, "--no-progress",
                 "--shard-index", str(other), "--shard-count", "2"])
    assert code == EXIT_OK
    assert json.loads((out / "_SUCCESS").read_text())["images"] == 0
    coco = json.loads(Path(coco_file(out, "detect")).read_text())
    assert coco["images"] == [] and coco["annotations"] == []
    assert (out / "labelstudio.json").read_text().strip() == "[\n]"


def test_annotate_refuses_when_out_dir_holds_a_run_with_other_tasks(tmp_path, capsys):
    folder = photos(tmp_path / "in", ["a.jpg"])
    image_id = str(folder / "a.jpg")
    other = (shard_of(image_id, 2) + 1) % 2
    args = ["annotate", str(folder), "--out", str(tmp_path / "out"), "--router", NO_ROUTER, "--no-progress",
            "--shard-index", str(other), "--shard-count", "2"]
    assert main(args + ["--tasks", "detect"]) == EXIT_OK
    for finished in (True, False):  # a complete shard or one still under way
        if not finished:
            os.unlink(tmp_path / "out" / "_SUCCESS")
        with pytest.raises(SystemExit) as info:
            main(args + ["--tasks", "detect,faces"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "other parameters (tasks: ['detect'] there, ['detect', 'faces'] now)" in err
        assert "another --out" in err


def test_annotate_help_says_how_a_finished_dir_grows_and_what_the_outputs_take(capsys):
    with pytest.raises(SystemExit):
        main(["annotate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "labels just the images its journal does not hold yet, then rewrites the outputs" in text
    assert "with others it exits 2 naming them; label into another --out, or delete DIR" in text
    assert "--outputs-review" in text and "--polygon-tolerance" in text


def test_annotate_exits_75_when_another_process_holds_the_out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code = main(["annotate", str(photos(tmp_path / "in", ["a.jpg"])), "--out", str(out),
                     "--router", NO_ROUTER, "--lock-timeout-s", "0"])
    finally:
        os.close(fd)
    assert code == EXIT_LOCKED


def test_parser_accepts_the_kubernetes_job_argv_when_read_from_job_yaml():
    job = yaml.safe_load((REPO / "k8s/jobs/annotate/job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["prelabel"]
    argv = [a.replace("$(JOB_COMPLETION_INDEX)", "3") for a in container["args"]]
    args = build_parser().parse_args(argv)
    assert (args.manifest, args.shard_index, args.shard_count) == ("/data/manifest.txt", 3, 8)
    assert args.router == "router:50051" and args.out == "/out/shard-3"
    assert args.tasks == ["detect", "segment", "keypoints", "faces"]


def test_command_table_runs_every_command_when_the_parser_offers_it():
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)


async def test_annotate_exits_4_with_complete_outputs_when_an_image_is_rejected(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg", "b.jpg", "bad.jpg"])
    double = PreLabelerDouble(task_code_for={"bad": grpc.StatusCode.INVALID_ARGUMENT})
    out = tmp_path / "out"
    async with serve(double) as address:
        code, log = await annotate(str(folder), "--out", str(out), "--router", address, "--tasks", "detect")
        assert code == EXIT_REJECTED, log
        assert (await annotate(str(folder), "--out", str(out), "--router", address, "--tasks", "detect"))[0] == EXIT_OK
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["image_id"].endswith("bad.jpg") and failure["retryable"] is False
    assert json.loads((out / "_SUCCESS").read_text())["rejected"] == 1
    files = [img["file_name"] for img in json.loads(Path(coco_file(out, "detect")).read_text())["images"]]
    assert sorted(os.path.basename(f) for f in files) == ["a.jpg", "b.jpg"]


async def test_annotate_labels_only_the_new_images_when_run_again_on_a_complete_shard(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg", "b.jpg"])
    out = tmp_path / "out"
    double = PreLabelerDouble()
    async with serve(double) as address:
        args = (str(folder), "--out", str(out), "--router", address, "--tasks", "detect")
        assert (await annotate(*args))[0] == EXIT_OK
        photos(folder, ["c.jpg", "d.jpg", "e.jpg"])
        code, log = await annotate(*args)
    assert code == EXIT_OK, log
    assert double.stream_received == {str(folder / n): 1 for n in ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]}
    assert "2 already done, 3 to label" in log, log
    assert "3 labelled in this run, 2 before" in log, log  # the end-of-run summary
    files = [img["file_name"] for img in json.loads(Path(coco_file(out, "detect")).read_text())["images"]]
    assert sorted(files) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    assert json.loads((out / "_SUCCESS").read_text())["labelled"] == 5


async def test_annotate_exits_3_without_success_when_router_is_unreachable(tmp_path):
    folder = photos(tmp_path / "in", ["a.jpg"])
    out = tmp_path / "out"
    # --timeout-s bounds each connection wait; an unreachable router is a suite that is
    # down: the run waits for it up to --patience-s, then gives up.
    code, log = await annotate(str(folder), "--out", str(out), "--router", f"127.0.0.1:{free_port()}",
                               "--timeout-s", "0.5", "--patience-s", "2")
    assert code == EXIT_FAILED, log
    assert not (out / "_SUCCESS").exists() and not (out / "coco").exists()
    (failure,) = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failure["retryable"] is True and "the suite was unavailable for over 2s" in failure["reason"]


async def test_annotate_finishes_images_in_flight_then_exits_143_when_sigterm(tmp_path):
    folder = photos(tmp_path / "in", [f"{i}.jpg" for i in range(12)])
    double = PreLabelerDouble(delay_s=0.2)
    out = tmp_path / "out"
    async with serve(double) as address:
        proc = await start_annotate(str(folder), "--out", str(out), "--router", address, "--tasks", "detect",
                                    "--concurrency", "2")
        journal = out / "journal.jsonl"
        await until(lambda: journal.exists() and journal.read_bytes().count(b"\n") >= 2, timeout_s=30,
                    what="two images journaled")
        proc.send_signal(signal.SIGTERM)
        log = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        assert proc.returncode == 143, log
        journaled = {json.loads(line)["image_id"] for line in journal.read_text().splitlines()}
        assert journaled == set(double.stream_received)  # what was sent was finished
        assert len(journaled) < 12 and not (out / "_SUCCESS").exists()
        code, log = await annotate(str(folder), "--out", str(out), "--router", address, "--tasks", "detect")
        assert code == EXIT_OK, log
    assert len(json.loads(Path(coco_file(out, "detect")).read_text())["images"]) == 12


def test_annotate_exits_2_without_repeating_the_token_when_it_is_unusable(tmp_path, monkeypatch, capsys):
    folder = photos(tmp_path / "in", ["a.jpg"])
    (tmp_path / "token").write_text("")
    cases = {"env": ([], "secret with-a-space"), "empty file": (["--token-file", str(tmp_path / "token")], None),
             "missing file": (["--token-file", str(tmp_path / "nope")], None)}
    for case, (args, env_token) in cases.items():
        if env_token is None:
            monkeypatch.delenv("PRELABEL_TOKEN", raising=False)
        else:
            monkeypatch.setenv("PRELABEL_TOKEN", env_token)
        with pytest.raises(SystemExit) as err:
            main(["annotate", str(folder), "--out", str(tmp_path / "out"), "--router", NO_ROUTER, *args])
        assert err.value.code == 2, case
        message = capsys.readouterr().err
        assert "token" in message and "with-a-space" not in message, (case, message)
    assert not (tmp_path / "out" / "journal.jsonl").exists()

"""Beyond one process, for real: KerasTuner's chief/worker search, a search killed and
resumed, and MultiWorkerMirroredStrategy training, each as separate processes on 127.0.0.1."""

import collections
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tfoptim.optimizers
from tfoptim.tuning import space

# Separate Python processes, each importing TensorFlow: the second tier.
pytestmark = pytest.mark.slow

JOBS = Path(__file__).with_name("distributed_jobs.py")
_spec = importlib.util.spec_from_file_location("distributed_jobs", JOBS)
jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jobs)

# Seconds for a whole test; the processes are killed after it, pass or fail.
TIMEOUT = int(os.environ.get("TFOPTIM_TEST_DISTRIBUTED_TIMEOUT", "240"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env, log):
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
                "PYTHONPATH": str(Path(tfoptim.optimizers.__file__).parents[2]), **env}
    return subprocess.Popen([sys.executable, str(JOBS), *args], env=full_env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait(processes, deadline):
    for p in processes:
        p.wait(timeout=max(1.0, deadline - time.monotonic()))


def stop(processes):
    for p in processes:
        if p.poll() is None:
            p.kill()
            p.wait()


def trials(directory):
    states = {}
    for path in Path(directory, "search").glob("trial_*/trial.json"):
        with open(path) as f:
            trial = json.load(f)
        states[trial["trial_id"]] = trial["status"]
    return states


def logged(path):
    with open(path) as f:
        return [tuple(line.split()) for line in f if line.strip()]


@pytest.mark.parametrize("role, count", [("search", jobs.SEARCH_TRIALS), ("autotune", 8)])
def test_chief_and_two_workers_run_every_trial_once(tmp_path, role, count):
    port = free_port()
    run_log, output = tmp_path / "trials.log", open(tmp_path / "output.log", "w")
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    processes = []
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            processes.append(start([role, str(tmp_path), str(run_log)],
                                   {**oracle, "KERASTUNER_TUNER_ID": tuner_id}, output))
        # The search is over when the workers are: they stop once the chief's oracle has
        # handed out every trial and each has ended its own. (The chief then polls every
        # 20 s before it exits; its state is on disk already, so it is not waited for.)
        wait(processes[1:], time.monotonic() + TIMEOUT)
    finally:
        stop(processes)
        output.close()
    assert [p.returncode for p in processes[1:]] == [0, 0], (tmp_path / "output.log").read_text()[-3000:]
    runs = logged(run_log)
    assert {tuner for tuner, _ in runs} <= {"tuner0", "tuner1"}  # the chief only serves
    counts = collections.Counter(trial for _, trial in runs)
    assert len(counts) == count and set(counts.values()) == {1}
    assert set(trials(tmp_path).values()) == {"COMPLETED"}


def test_a_killed_search_resumes_without_repeating_trials(tmp_path):
    run_log, output = tmp_path / "trials.log", open(tmp_path / "output.log", "w")
    processes = []
    try:
        # Killed (SIGKILL) in the middle of its second trial.
        processes.append(start(["search", str(tmp_path), str(run_log), "2"], {}, output))
        wait(processes, time.monotonic() + TIMEOUT / 2)
        assert processes[0].returncode == -9
        assert trials(tmp_path) == {"0": "COMPLETED", "1": "RUNNING"}
        processes.append(start(["search", str(tmp_path), str(run_log)], {}, output))
        wait(processes[1:], time.monotonic() + TIMEOUT / 2)
    finally:
        stop(processes)
        output.close()
    assert processes[1].returncode == 0, (tmp_path / "output.log").read_text()[-3000:]
    # Trial 1 was interrupted, so it runs again; trial 0 had finished and does not.
    assert [trial for _, trial in logged(run_log)] == ["0", "1", "1", "2", "3"]
    assert set(trials(tmp_path).values()) == {"COMPLETED"} and len(trials(tmp_path)) == 4


def mwms_names():
    """The default search space's optimizers; ``TFOPTIM_TEST_MWMS=all`` runs every tfoptim
    optimizer (minutes on 2 cores), ``TFOPTIM_TEST_MWMS=adam,soap`` those named. The contract
    tests already run every optimizer under ``MirroredStrategy`` in one process; this test
    adds the multi-process path."""
    chosen = os.environ.get("TFOPTIM_TEST_MWMS")
    if chosen == "all":
        return [n for n in space.canonical_names() if not n.startswith("keras.")]
    return chosen.split(",") if chosen else list(space.DEFAULT_OPTIMIZERS)


def test_multi_worker_mirrored_training_equals_one_process(tmp_path):
    names = mwms_names()
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    output = open(tmp_path / "output.log", "w")
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            processes.append(start(["mwms", str(tmp_path / f"worker{index}.npz"), ",".join(names)],
                                   {"TF_CONFIG": json.dumps(tf_config)}, output))
        wait(processes, time.monotonic() + TIMEOUT)
    finally:
        stop(processes)
        output.close()
    assert [p.returncode for p in processes] == [0, 0], (tmp_path / "output.log").read_text()[-3000:]
    distributed = [np.load(tmp_path / f"worker{i}.npz") for i in range(2)]
    for name in names:
        expected = jobs.train(name)
        for i, weight in enumerate(expected):
            for worker in distributed:
                np.testing.assert_allclose(worker[f"{name}:{i}"], weight, rtol=1e-5, atol=1e-7,
                                           err_msg=name)

"""Several nodes on one machine: 2 nodes x 1 process (gloo) on loopback, as a cluster job would run.

Two `ember fit` processes with NODE_RANK 0 and 1 (and MASTER_ADDR/MASTER_PORT), or with SLURM's variables as srun
sets them (the configs/cloud/multinode_slurm.yaml overlay), train on text shards served over loopback HTTP and log
to a tracking server on loopback. A
2-node job is the same computation as 2 processes on one node: same ranks, same shards, the same weights.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ember.data_modules.corpus import builtin_corpus
from ember.data_modules.shards import prepare_text_shards
from helpers import DEBUG, ROOT, free_port, mlflow_rows, mlflow_server, needs_mlflow_server, run_folder, serve_folder

STEPS = ("--trainer.max_steps", "6", "--trainer.val_check_interval", "3", "--trainer.enable_progress_bar", "false")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The built-in corpus as 4 train shards and a val shard."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "corpus.txt").write_bytes(builtin_corpus())
    prepare_text_shards([folder / "corpus.txt"], folder / "shards", chunk_bytes=4096, shard_bytes=1 << 18)
    return folder / "shards"


def fit(run_dir, data: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ember.cli.main", "fit", "--config", DEBUG, *STEPS, "--data.init_args.path", data,
            "--trainer.logger.init_args.run_dir", str(run_dir), *extra]


def launch_nodes(argv: list[str], node_env, folder, timeout: float = 300, signal_when=None,
                 per_node: str | None = None) -> list[int]:
    """Start one process per node (node_env(i): its environment; per_node: an argument replaced by the node's number)
    and wait for all, which must exit 0 (or, given signal_when, a glob under folder: SIGUSR1 to every node once it
    matches, as SLURM signals every task); their exit statuses."""
    port, procs = free_port(), []
    for node in (0, 1):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port), **node_env(node)}
        command = [str(node) if per_node and arg == per_node else arg for arg in argv]
        with open(folder / f"node{node}.log", "w") as out:
            procs.append(subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        if signal_when:
            deadline = time.monotonic() + timeout
            while not list(folder.glob(signal_when)) and time.monotonic() < deadline:
                assert all(p.poll() is None for p in procs), "a node ended before the signal"
                time.sleep(0.1)
            for p in procs:
                p.send_signal(signal.SIGUSR1)
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    logs = "\n".join((folder / f"node{node}.log").read_text()[-2000:] for node in (0, 1))
    assert codes == ([128 + signal.SIGUSR1] * 2 if signal_when else [0, 0]), logs
    return codes


def last(run_dir) -> dict:
    return torch.load(run_folder(run_dir) / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)


def assert_same_weights(a: dict, b: dict):
    assert a["global_step"] == b["global_step"] == 6
    for name, value in b["state_dict"].items():
        torch.testing.assert_close(a["state_dict"][name], value, rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def one_node(shards, tmp_path_factory):
    """The reference: 2 processes on one node (Lightning's DDP launcher), reading the shard folder from disk."""
    runs = tmp_path_factory.mktemp("one_node")
    done = subprocess.run(fit(runs, str(shards), "--trainer.strategy", "ddp", "--trainer.devices", "2"), cwd=runs,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return last(runs)


@pytest.mark.slow
def test_two_nodes_on_remote_shards_log_one_run_to_a_server_and_train_as_one_node_does(shards, one_node, tmp_path):
    """Shards over loopback HTTP, a tracking server on loopback (proxied artifacts), NODE_RANK 0 and 1."""
    import mlflow

    needs_mlflow_server()
    with serve_folder(shards) as url, mlflow_server(tmp_path / "server") as server:
        launch_nodes(fit(tmp_path / "runs", url, "--trainer.strategy", "ddp", "--trainer.num_nodes", "2",
                         "--trainer.devices", "1", "--trainer.logger.init_args.tracking_uri", server),
                     lambda node: {"NODE_RANK": str(node)}, tmp_path)
        client = mlflow.MlflowClient(server)
        (run,) = client.search_runs([client.get_experiment_by_name("ember").experiment_id])  # rank 0's alone
        assert run.info.status == "FINISHED" and "val/bpb" in run.data.metrics
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"config.yaml", "last", "plots"}
    assert_same_weights(last(tmp_path / "runs"), one_node)


@pytest.mark.slow
def test_the_slurm_overlay_runs_from_slurms_variables(shards, one_node, tmp_path):
    """configs/cloud/multinode_slurm.yaml (2 nodes) with srun's variables for 2 tasks, one per node; Lightning's
    SLURMEnvironment reads them (the overlay's GPU settings are replaced by the CPU's)."""
    def slurm(node: int) -> dict:
        return {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_PROCID": str(node), "SLURM_LOCALID": "0",
                "SLURM_NODEID": str(node), "SLURM_JOB_NAME": "ember", "SLURM_JOB_ID": "4242",
                "SLURM_NODELIST": "localhost"}

    argv = fit(tmp_path / "runs", str(shards), "--config", str(ROOT / "configs/cloud/multinode_slurm.yaml"),
               "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true")
    launch_nodes(argv, slurm, tmp_path)
    assert_same_weights(last(tmp_path / "runs"), one_node)
    assert "SLURM auto-requeueing enabled" in (tmp_path / "node0.log").read_text()
    assert mlflow_rows(tmp_path / "runs", "select count(*) from runs") == [(1,)]


@pytest.mark.slow
def test_torchrun_on_two_nodes_trains_as_one_node_does(shards, one_node, tmp_path):
    """torchrun's rendezvous (--nnodes 2 --node-rank 0/1, GROUP_RANK for Lightning's TorchElasticEnvironment)."""
    port = free_port()
    argv = fit(tmp_path / "runs", str(shards), "--trainer.strategy", "ddp", "--trainer.num_nodes", "2",
               "--trainer.devices", "1")[1:]  # after `python`: torchrun runs `-m ember.cli.main fit ...`
    torchrun = str(Path(sys.executable).parent / "torchrun")
    launch_nodes([torchrun, "--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port",
                  str(port), "--node-rank", "NODE", *argv], lambda node: {}, tmp_path, per_node="NODE")
    assert_same_weights(last(tmp_path / "runs"), one_node)


@pytest.mark.slow
def test_two_nodes_end_near_one_process_with_the_same_global_batch(shards, one_node, tmp_path):
    """One process with batch 16 sees other windows than 2 x 8, so the weights differ; the loss agrees."""
    done = subprocess.run(fit(tmp_path / "runs", str(shards), "--data.init_args.batch_size", "16"), cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    def val_loss(ckpt: dict) -> float:
        (state,) = [v for k, v in ckpt["callbacks"].items() if "Checkpoint" in k]
        return float(state["current_score"])

    alone, nodes = val_loss(last(tmp_path / "runs")), val_loss(one_node)
    assert abs(alone - nodes) < 0.02 * nodes, (alone, nodes)


@pytest.mark.slow
def test_a_two_node_job_signalled_on_every_node_stops_together_and_resumes(shards, tmp_path):
    """SIGUSR1 reaches both nodes at once (SLURM's --signal): every rank agrees at the end of a batch, both save
    and exit 138, nothing hangs; the resumed job (NODE_RANK 0/1 again, --ckpt_path last.ckpt) ends at its step."""
    nodes = ("--trainer.strategy", "ddp", "--trainer.num_nodes", "2", "--trainer.devices", "1")
    runs = tmp_path / "runs"
    launch_nodes(fit(runs, str(shards), *nodes, "--trainer.max_steps", "100000"),
                 lambda node: {"NODE_RANK": str(node)}, tmp_path, signal_when="runs/*/*/checkpoints/last.ckpt")
    stopped_at = last(runs)["global_step"]
    assert stopped_at >= 3 and "SIGUSR1 stopped `ember fit` at step" in (tmp_path / "node0.log").read_text()
    until = (stopped_at // 3 + 2) * 3  # a validation step: last.ckpt is saved at validations
    launch_nodes(fit(runs, str(shards), *nodes, "--trainer.max_steps", str(until), "--ckpt_path",
                     str(run_folder(runs) / "checkpoints/last.ckpt")), lambda node: {"NODE_RANK": str(node)}, tmp_path)
    assert last(runs)["global_step"] == until
    assert mlflow_rows(runs, "select status from runs") == [("FINISHED",)]

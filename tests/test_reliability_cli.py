"""The command under the faults a user meets: Ctrl-C, a closed pipe, no matplotlib, odd batches, a
checkpoint of another start; and the Python API with single-example labels and non-finite data."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp
from jaxbp.train.checkpoint import CheckpointError
from helpers import NETWORKS, run_cli

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def cli(*args):
    return [sys.executable, "-m", "jaxbp.cli", *args]


# `python -m jaxbp.cli`, with Ctrl-C handled as Python handles it by default. A shell without job
# control (`bash scripts/test &`) starts pytest with SIGINT ignored and a child inherits that, so
# Python would never install its own handler and the command would never see the signal this test
# sends. (A preexec_fn would do the same after fork, which is unsafe in a process with JAX's threads.)
WITH_CTRL_C = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "runpy.run_module('jaxbp.cli', run_name='__main__', alter_sys=True)")


def test_ctrl_c_during_train_says_what_was_kept_and_exits_130(tmp_path):
    ck = tmp_path / "ck"
    proc = subprocess.Popen([sys.executable, "-c", WITH_CTRL_C, "train", "003", "--epochs", "2000000", "--chunk-epochs",
                             "20000", "--lr", "0.01", "--checkpoint", str(ck), "--out", str(tmp_path / "out"), "--quiet"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (ck / "checkpoint.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"the last checkpoint is in {ck}; continue with the same command and --resume" in err


def test_a_closed_pipe_is_not_a_failure():
    """The real `| head -1`: the reader closes after one line, and the process ends quietly with 0. Whether
    a write meets the closed pipe depends on timing; the next test makes that write every time."""
    proc = subprocess.Popen(cli("check", "003"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"parameter")
    assert proc.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err


class ClosedPipe:
    """A stdout whose reader has gone: every write raises BrokenPipeError, as a write to a closed pipe does."""

    writes = 0

    def write(self, text):
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        pass


def test_a_write_to_a_closed_pipe_ends_the_command_quietly_with_0(monkeypatch, capsys):
    import jaxbp.cli

    silenced = []
    monkeypatch.setattr(jaxbp.cli, "_silence_stdout", lambda: silenced.append(True))
    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    assert jaxbp.cli.main(["check", "003"]) == 0
    assert pipe.writes >= 1 and silenced == [True]  # the handler ran, and pointed stdout away once
    assert capsys.readouterr().err == ""


# in process: the command, not the process, is under test
def test_train_without_matplotlib_writes_everything_but_the_plots(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` meets where it is not installed
    r = run_cli("train", "002", "--epochs", "20", "--quiet", "--out", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    assert "plots skipped: matplotlib is not installed" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    names = {p.name for p in (tmp_path / "t").iterdir() if not p.name.startswith(".")}
    assert names == {"summary.json", "history.csv"}
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["status"] == "finished"


def test_a_batch_size_that_leaves_examples_out_says_so_and_records_it(tmp_path):
    net = NETWORKS / "two_hidden_layers.toml"  # three examples
    r = run_cli("train", net, "--epochs", "4", "--batch-size", "2", "--quiet", "--out", tmp_path / "t")
    assert r.returncode == 0, r.stderr
    assert "3 examples in batches of 2: the last 1 of each epoch's shuffle are left out of that epoch" in r.stderr
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["examples"] == 3 and summary["examples_left_out_per_epoch"] == 1 and summary["batch_size"] == 2


def test_resume_refuses_a_checkpoint_of_other_starting_weights(tmp_path):
    net = jaxbp.mlp([2, 3, 1], "tanh")
    data = (jnp.ones((4, 2)), jnp.zeros((4, 1)))
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.1)
    jaxbp.fit(trainer, net.init(key=jax.random.key(0)), data, epochs=3, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="from a different run: start_params_sha256"):
        jaxbp.fit(trainer, net.init(key=jax.random.key(1)), data, epochs=6, checkpoint_dir=tmp_path, resume=True,
                  progress=False)
    again = jaxbp.fit(trainer, net.init(key=jax.random.key(0)), data, epochs=6, checkpoint_dir=tmp_path, resume=True,
                      progress=False)
    assert int(again.state.step) == 6


def test_one_example_with_an_integer_label():
    net = jaxbp.mlp([2, 3], "identity")
    params = net.init(key=jax.random.key(0))
    x = jnp.asarray([0.5, -1.0])
    value, grads = jaxbp.manual_value_and_grad(net, "softmax_cross_entropy")(params, x, 2)
    logits = np.asarray(params["dense0"]["w"]) @ np.asarray(x) + np.asarray(params["dense0"]["b"])
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(value, -np.log(p[2]), rtol=1e-12)
    np.testing.assert_allclose(grads["dense0"]["b"], p - np.eye(3)[2], rtol=1e-12)


@pytest.mark.parametrize("where", ["params", "x", "target"])
def test_non_finite_values_are_refused_at_every_door(where):
    net = jaxbp.mlp([2, 2], "tanh")
    params, x, t = net.init(key=jax.random.key(0)), jnp.ones((3, 2)), jnp.zeros((3, 2))
    if where == "params":
        params["dense0"]["w"] = params["dense0"]["w"].at[1, 0].set(jnp.nan)
    elif where == "x":
        x = x.at[2, 1].set(jnp.inf)
    else:
        t = t.at[0, 0].set(-jnp.inf)
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.1)
    with pytest.raises(ValueError, match="every value must be finite"):
        jaxbp.manual_value_and_grad(net, "mse")(params, x, t)
    with pytest.raises(ValueError, match="every value must be finite"):
        jaxbp.fit(trainer, params, (x, t), epochs=2, progress=False)
    if where != "params":
        with pytest.raises(ValueError, match="every value must be finite"):
            trainer.step(trainer.init(params), (x, t))


def test_a_loss_that_applies_the_output_activation_again_warns():
    net = jaxbp.mlp([2, 3], "softmax")
    with pytest.warns(UserWarning, match="the output 'act0' is a softmax, and softmax_cross_entropy applies softmax"):
        jaxbp.manual_value_and_grad(net, "softmax_cross_entropy")

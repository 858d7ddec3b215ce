"""Data-parallel fit: split over several devices, it trains as on one device.

The expected numbers come from the ordinary one-device fit (a program without meshes, shard_map
or collectives), run in the same process on the same data. Two tests, each one set of
subprocesses, so that pytest-xdist starts them once:
  * eight forced CPU devices in one process: a chain and a graph with a skip connection, with
    minibatches, both gradient routes, three optimizers, a mean and a sum loss, full batch through
    the command;
    uneven chunks traced once; checkpoints resumed on the same and on other device counts; the
    command's --devices; the one-line refusals that need several devices;
  * two processes joined by jax.distributed (loopback, gloo), two CPU devices each, against one
    process with one device.
Float64 throughout: sharded results must match within rtol 1e-12 (they differ only by the order
of the batch sums).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp
from helpers import QUICK_JAX, QUICK_XLA
from jaxbp.train.fit import fit

RTOL = 1e-12

EIGHT_DEVICES = r'''
import json, shutil, sys
from pathlib import Path
import jax
jax.config.update("jax_num_cpu_devices", 8)  # before anything starts JAX
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import optax
import jaxbp
from jaxbp import node, dense
from jaxbp.train.fit import fit

out = Path(sys.argv[1])
assert len(jax.devices()) == 8
rng = np.random.default_rng(0)
chain = jaxbp.mlp([4, 8, 3], ["tanh", "identity"])
skip = jaxbp.graph(inputs={"x": 3}, nodes=[node("hidden", dense(5), "x"), node("act", "tanh", "hidden"),
                                           node("branch", dense(3), "act"), node("y", "add", "x", "branch")])
data = {"chain": (jnp.asarray(rng.normal(size=(48, 4))), jnp.asarray(rng.normal(size=(48, 3)))),
        "skip": (jnp.asarray(rng.normal(size=(48, 3))), jnp.asarray(rng.normal(size=(48, 3))))}
nets = {"chain": chain, "skip": skip}
held_out = jnp.asarray(rng.normal(size=(10, 4))), jnp.asarray(rng.normal(size=(10, 3)))
KEY = jax.random.key(7)

def start(net):  # from numpy: an eager jax.random call compiles, and costs more here than a training run
    return {name: {leaf: (rng.normal(size=shape) / np.sqrt(shape[-1]) if leaf == "w" else 0.1 * rng.normal(size=shape))
                   for leaf, shape in net.param_shapes[name].items()} for name in net.param_nodes}

starts = {"chain": start(chain), "skip": start(skip)}
chain_loss = jaxbp.loss_fn(chain, "mse")

def held_out_loss(params):
    return {"held_out": chain_loss(params, *held_out)}

arrays, info = {}, {"traces": {}, "errors": {}}

def keep(name, result):
    for key, value in result.history.items():
        arrays[f"{name}.{key}"] = value
    state = jax.device_get(result.state)
    for part, tree in (("params", state.params), ("opt", state.opt_state), ("step", state.step)):
        for i, leaf in enumerate(jax.tree.leaves(tree)):
            arrays[f"{name}.{part}{i}"] = np.asarray(leaf)

def run(name, trainer, *args, **kwargs):
    """fit, keeping its results, and how many programs it traced."""
    before = trainer.traces.get("fit_chunk", 0)
    result = fit(trainer, *args, progress=False, **kwargs)
    keep(name, result)
    info["traces"][name] = trainer.traces.get("fit_chunk", 0) - before
    return result

# (name, network, loss, grads, optimizer, learning rate, batch size, how to split); each trainer runs
# on one device and split. Gentle learning rates: rounding differences must not grow past 1e-12.
cases = [
    ("chain_manual_minibatch", "chain", "mse", "manual", "sgd", 0.05, 16, {"devices": 8}),
    ("chain_autodiff_minibatch", "chain", "mse", "autodiff", "adam", 0.01, 16, {"devices": 4}),
    ("skip_manual_minibatch", "skip", jaxbp.get_loss("half_sse", "sum"), "manual", "momentum", 0.005, 8,
     {"mesh": jax.make_mesh((2,), ("data",))}),  # a user's mesh, of JAX's default axis type (Explicit)
    ("skip_autodiff_minibatch", "skip", "half_sse", "autodiff", "sgd", 0.05, 16, {"devices": 8}),
]
trainers = {}
for name, net, loss, grads, opt, lr, batch, split in cases:
    extra = {"eval_fn": held_out_loss} if name == "chain_manual_minibatch" else {}
    batching = {} if batch is None else {"batch_size": batch, "key": KEY}
    trainer = trainers[name] = jaxbp.make_trainer(nets[net], loss, optimizer=jaxbp.make_optimizer(opt, lr), grads=grads)
    params = starts[net]
    for kind, how in (("one", {}), ("split", split)):  # five epochs in chunks of 2, 2 and 1
        run(f"{name}.{kind}", trainer, params, data[net], epochs=5, chunk_epochs=2, **batching, **extra, **how)

# checkpoints: the first case's run on 8 devices stopped after 2 epochs, resumed on 8, 4 and 1 device
trainer, chain_params = trainers["chain_manual_minibatch"], starts["chain"]
same = dict(epochs=5, batch_size=16, key=KEY, chunk_epochs=2, eval_fn=held_out_loss)
run("ck.first_half8", trainer, chain_params, data["chain"], devices=8, checkpoint_dir=out / "ck8", **{**same, "epochs": 2})
for devices in (4, 1):
    shutil.copytree(out / "ck8", out / f"ck{devices}")
run("ck.resumed8", trainer, chain_params, data["chain"], devices=8, checkpoint_dir=out / "ck8", resume=True, **same)
run("ck.loaded4", trainer, chain_params, data["chain"], devices=4, checkpoint_dir=out / "ck4", resume=True, **{**same, "epochs": 2})
run("ck.resumed4", trainer, chain_params, data["chain"], devices=4, checkpoint_dir=out / "ck4", resume=True, **same)
run("ck.resumed1", trainer, chain_params, data["chain"], checkpoint_dir=out / "ck1", resume=True, **same)

# what several devices can refuse
x, t = data["chain"]
for name, call in {
    "batch": lambda: fit(trainer, chain_params, (x, t), epochs=1, batch_size=12, key=KEY, devices=8),
    "full_batch": lambda: fit(trainer, chain_params, (x[:30], t[:30]), epochs=1, devices=4),
    "too_many": lambda: fit(trainer, chain_params, (x, t), epochs=1, devices=9),
    "axis_name": lambda: fit(trainer, chain_params, (x, t), epochs=1, mesh=jax.make_mesh((8,), ("batch",))),
}.items():
    try:
        call()
        info["errors"][name] = None
    except ValueError as err:
        info["errors"][name] = str(err)

# the command on 4 devices, full batch, and the same training by fit on one device
sys.modules["matplotlib"] = None  # no plots: drawing them would take longer than the training
from jaxbp.cli import main
from jaxbp.teach import network_file
toml = out / "net.toml"
xs = np.round(rng.normal(size=(8, 2)), 3).tolist()
ts = np.round(rng.normal(size=(8, 1)), 3).tolist()
toml.write_text(f"""[network]\nsizes = [2, 3, 1]\nactivations = ["tanh", "identity"]\nseed = 0\n
[training]\nloss = "half_sse"\nlearning_rate = 0.1\n\n[data]\nx = {xs}\ntarget = {ts}\n""")
info["cli"] = main(["train", str(toml), "--epochs", "4", "--devices", "4", "--quiet", "--out", str(out / "cli")])
preset = network_file.load(str(toml))
reference = run("cli_reference", jaxbp.make_trainer(preset.graph, "half_sse", learning_rate=0.1), preset.params(),
                preset.data(), epochs=4)
arrays["cli_reference.final_loss"] = np.asarray(reference.final_loss)
np.savez(out / "arrays.npz", **arrays)
(out / "info.json").write_text(json.dumps(info))
'''


def _env() -> dict:
    """The subprocesses' environment: CPU only, no compile cache, and XLA's quick compile (QUICK_JAX and QUICK_XLA),
    which cuts their compile time, nearly all of their run time, to about a third; every comparison
    inside one subprocess has both sides compiled alike."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    return {**env, "JAX_PLATFORMS": "cpu", "JAXBP_CACHE_DIR": "", "XLA_FLAGS": " ".join(QUICK_XLA),
            QUICK_JAX.upper(): "1"}


def _close(a, b, what):
    """Within RTOL element by element; an optimizer's state (sums of gradients, where terms cancel)
    within RTOL of its largest element."""
    atol = RTOL * np.max(np.abs(b)) if ".opt" in what else 0
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=atol, err_msg=what)


def test_split_over_eight_devices_trains_as_one_device(tmp_path):
    proc = subprocess.run([sys.executable, "-c", EIGHT_DEVICES, str(tmp_path)], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    arrays = dict(np.load(tmp_path / "arrays.npz"))
    info = json.loads((tmp_path / "info.json").read_text())

    # every case: the split run matches the one-device run: history, parameters and optimizer state
    cases = sorted({k.split(".")[0] for k in arrays if k.endswith(".split.loss")})
    assert len(cases) == 4
    for case in cases:
        one, split = f"{case}.one", f"{case}.split"
        keys = sorted(k[len(one) + 1:] for k in arrays if k.startswith(one + "."))
        assert keys == sorted(k[len(split) + 1:] for k in arrays if k.startswith(split + "."))
        assert len([k for k in keys if k.startswith("params")]) == 4 and arrays[f"{one}.loss"].shape == (5,)
        for key in keys:
            _close(arrays[f"{split}.{key}"], arrays[f"{one}.{key}"], f"{case}.{key}")
        # five epochs in chunks of 2, 2 and 1: one program, traced once
        assert info["traces"][split] == 1, (case, info["traces"][split])
    assert "chain_manual_minibatch.one.held_out" in arrays  # eval_fn ran on the replicated parameters

    # checkpoints: on the same device count the resumed run is bit-identical to the uninterrupted one ...
    whole = "chain_manual_minibatch.split"  # 8 devices
    for key in (k[len(whole) + 1:] for k in arrays if k.startswith(whole + ".")):
        np.testing.assert_array_equal(arrays[f"ck.resumed8.{key}"], arrays[f"{whole}.{key}"], err_msg=key)
    # ... on another one the saved state comes back bit for bit, and training goes on as on one device
    saved = [k[len("ck.first_half8."):] for k in arrays if k.startswith("ck.first_half8.")]
    assert len([k for k in saved if k.startswith(("params", "step"))]) == 5
    for key in saved:
        np.testing.assert_array_equal(arrays[f"ck.loaded4.{key}"], arrays[f"ck.first_half8.{key}"], err_msg=key)
    for resumed in ("ck.resumed4", "ck.resumed1"):
        for key in (k[len(resumed) + 1:] for k in arrays if k.startswith(resumed + ".")):
            _close(arrays[f"{resumed}.{key}"], arrays[f"chain_manual_minibatch.one.{key}"], f"{resumed}.{key}")
    # the programs of 8 devices and of one were built already: only 4 devices traced a new one
    assert [info["traces"][k] for k in ("ck.first_half8", "ck.resumed8", "ck.resumed4", "ck.resumed1")] == [0, 0, 1, 0]

    errors = info["errors"]
    assert errors["batch"] == ("batch_size: a batch of 12 examples does not split evenly over 8 devices; use a batch "
                               "size that is a multiple of 8 (8 or 16) or a device count that divides 12 (1, 2, 3, 4 or 6)")
    assert errors["full_batch"] == ("data: full batch: 30 examples in one batch, which does not split evenly over 4 "
                                    "devices; use a device count that divides 30 (1, 2, 3, 5 or 6) or a batch_size "
                                    "that is a multiple of 4 (28)")
    assert errors["too_many"].startswith("devices: asked for 9, but JAX has 8 cpu devices")
    assert errors["axis_name"] == "mesh: expected one axis named 'data' to split batches over, got axes ('batch',)"
    assert all("\n" not in e for e in errors.values())

    # the command on 4 devices, full batch, ends where fit on one device does
    assert info["cli"] == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["devices"] == 4
    for i, leaf in enumerate(jax.tree.leaves(summary["final_params"], is_leaf=lambda v: isinstance(v, list))):
        _close(leaf, arrays[f"cli_reference.params{i}"], "jaxbp train --devices 4")
    _close(summary["final_loss"], arrays["cli_reference.final_loss"], "jaxbp train --devices 4: final loss")


TWO_PROCESSES = r'''
import json, sys
from pathlib import Path
port, process, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
import jax
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process,
                           initialization_timeout=60)
jax.config.update("jax_enable_x64", True)
import numpy as np
import jaxbp
from jaxbp.train.fit import fit
assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
rng = np.random.default_rng(0)  # numpy, not jax.random: every eager JAX op compiles, and that is slow here
net = jaxbp.mlp([3, 6, 2], ["tanh", "identity"])
x, t = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
params = {"dense0": {"w": rng.normal(size=(6, 3)) / 2, "b": np.zeros(6)}, "dense1": {"w": rng.normal(size=(2, 6)) / 3, "b": np.zeros(2)}}
trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.1, grads=sys.argv[4])
r = fit(trainer, params, (x, t), epochs=4, batch_size=8, key=jax.random.key(3), chunk_epochs=2, progress=False,
        devices=4, checkpoint_dir=out / "ck")
leaves = [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(r.state.params)]
(out / f"process{process}.json").write_text(json.dumps({"loss": r.history["loss"].tolist(), "params": leaves,
                                                         "final_loss": r.final_loss}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_train_as_one_device(tmp_path):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESSES, str(port), str(i), str(tmp_path), "autodiff"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
             for i in range(2)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=180))
    finally:  # a hang fails the test instead of blocking the suite
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads((tmp_path / f"process{i}.json").read_text()) for i in range(2)]
    assert results[0] == results[1]  # both processes hold the same replicated state

    # one process, one device: the ordinary fit
    rng = np.random.default_rng(0)
    net = jaxbp.mlp([3, 6, 2], ["tanh", "identity"])
    x, t = rng.normal(size=(32, 3)), rng.normal(size=(32, 2))
    params = {"dense0": {"w": rng.normal(size=(6, 3)) / 2, "b": np.zeros(6)},
              "dense1": {"w": rng.normal(size=(2, 6)) / 3, "b": np.zeros(2)}}
    trainer = jaxbp.make_trainer(net, "mse", learning_rate=0.1, grads="autodiff")
    run = dict(batch_size=8, key=jax.random.key(3), chunk_epochs=2, progress=False)
    whole = fit(trainer, params, (x, t), epochs=6, **run)
    _close(results[0]["loss"], whole.history["loss"][:4], "two processes: loss history")
    # the checkpoint that process 0 wrote resumes here, on one device, and goes on as the one-device run
    shutil.copytree(tmp_path / "ck", tmp_path / "ck_here")
    resumed = fit(trainer, params, (x, t), epochs=6, checkpoint_dir=tmp_path / "ck_here",
                  resume=True, **run)
    np.testing.assert_array_equal(resumed.history["loss"][:4], results[0]["loss"])
    _close(resumed.history["loss"], whole.history["loss"], "resumed on one device: loss history")
    for a, b in zip(jax.tree.leaves(resumed.state.params), jax.tree.leaves(whole.state.params)):
        _close(a, b, "resumed on one device: params")
    at_four = fit(trainer, params, (x, t), epochs=4, **run)
    for a, b in zip(results[0]["params"], jax.tree.leaves(at_four.state.params)):
        _close(np.asarray(a), b, "two processes: params")
    _close(results[0]["final_loss"], at_four.final_loss, "two processes: final loss")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["checkpoint.npz"]  # one writer, no stray files


def test_a_sharded_fit_traces_once_and_one_device_is_the_ordinary_program():
    """devices=1 runs the ordinary program; a mesh of this process's one device traces one program too."""
    from jaxbp.train import parallel

    net = jaxbp.mlp([2, 3, 1], ["tanh", "identity"])
    params = net.init(key=jax.random.key(0))
    x, t = jnp.asarray(np.linspace(-1, 1, 8).reshape(4, 2)), jnp.asarray(np.linspace(0, 1, 4).reshape(4, 1))
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=0.1)
    reference = fit(trainer, params, (x, t), epochs=7, chunk_epochs=3, progress=False)
    one = fit(trainer, params, (x, t), epochs=7, chunk_epochs=3, progress=False, devices=1)
    assert trainer.traces == {"fit_chunk": 1} and one.compile_seconds == 0  # the same program
    np.testing.assert_array_equal(one.history["loss"], reference.history["loss"])
    meshed = jaxbp.make_trainer(net, "half_sse", learning_rate=0.1)
    on_mesh = fit(meshed, params, (x, t), epochs=7, chunk_epochs=3, progress=False, mesh=parallel.data_mesh(1))
    again = fit(meshed, params, (x, t), epochs=7, chunk_epochs=3, progress=False, mesh=parallel.data_mesh(1))
    assert meshed.traces == {"fit_chunk": 1} and again.compile_seconds == 0
    _close(on_mesh.history["loss"], reference.history["loss"], "a one-device mesh")
    assert on_mesh.state.params["dense0"]["w"].sharding.spec == jax.sharding.PartitionSpec()

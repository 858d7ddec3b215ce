"""Hand-written peer implementations that the benchmark runs next to jaxbp.

Every peer returns ``(final_loss, result, seconds)``:
  final_loss  loss of the final parameters after the last update (tutorial 000: E = sum 1/2 (t - o)^2;
              digits: mean softmax cross-entropy over the training set)
  result      tutorial 000: the final weights as [w_hidden (2, 2), w_output (2, 2)] nested lists, rows per
              destination unit (out, in) as in jaxbp; digits: test accuracy in [0, 1]
  seconds     wall time of the training loop only: building arrays, models, optimizers and (for JAX)
              compiling happen before the clock starts; the final loss is computed after it stops

Tutorial 000 is the 2-2-2 sigmoid network with one shared bias per layer (0.25 hidden, 0.35 output) that
is never updated, trained by plain SGD (lr 0.6) on the single example x = [0.1, 0.5], t = [0.05, 0.95].
torch and scikit-learn are imported inside the functions that use them; a missing one raises
ImportError, which the harness turns into a skipped row.

torch runs with one intra-op thread (``TORCH_THREADS``): these tensors (at most 32 x 128) give its
threads nothing to split, and next to JAX's and OpenBLAS's thread pools on a 2-core machine its two
OpenMP threads made digits epochs erratic and up to tens of times slower. One thread is torch's
best case here, so the comparison does not flatter jaxbp.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time

import numpy as np

TORCH_THREADS = 1


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run torch with ``n`` intra-op threads, restoring the previous setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


# -- tutorial 000 -------------------------------------------------------------------------------------

W_HIDDEN = [[0.1, 0.3], [0.2, 0.4]]  # (out=2, in=2): row j = weights into hidden unit j
W_OUTPUT = [[0.5, 0.6], [0.7, 0.8]]  # (out=2, in=2): row k = weights into output unit k
B_HIDDEN, B_OUTPUT = 0.25, 0.35  # shared biases, frozen
X = [0.1, 0.5]
TARGET = [0.05, 0.95]
LR = 0.6


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _py_forward(w1, w2, x):
    """Pure Python: x (2,) -> (hidden activations (2,), outputs (2,))."""
    h = [_sig(w1[j][0] * x[0] + w1[j][1] * x[1] + B_HIDDEN) for j in range(2)]
    o = [_sig(w2[k][0] * h[0] + w2[k][1] * h[1] + B_OUTPUT) for k in range(2)]
    return h, o


def _py_loss(w1, w2) -> float:
    _, o = _py_forward(w1, w2, X)
    return sum(0.5 * (t - v) ** 2 for t, v in zip(TARGET, o))


def tutorial_python(steps: int):
    """Pure Python floats (float64), backprop written out unit by unit."""
    w1 = [row[:] for row in W_HIDDEN]
    w2 = [row[:] for row in W_OUTPUT]
    x, t, lr = X, TARGET, LR
    start = time.perf_counter()
    for _ in range(steps):
        h, o = _py_forward(w1, w2, x)
        do = [(o[k] - t[k]) * o[k] * (1.0 - o[k]) for k in range(2)]  # dE/dz_out
        dh = [(do[0] * w2[0][j] + do[1] * w2[1][j]) * h[j] * (1.0 - h[j]) for j in range(2)]  # dE/dz_hidden
        w2 = [[w2[k][j] - lr * do[k] * h[j] for j in range(2)] for k in range(2)]
        w1 = [[w1[j][i] - lr * dh[j] * x[i] for i in range(2)] for j in range(2)]
    seconds = time.perf_counter() - start
    return _py_loss(w1, w2), [w1, w2], seconds


def _np_sig(z):
    return 1 / (1 + np.exp(-z))


def tutorial_numpy(steps: int, dtype=np.float64):
    """numpy arrays in ``dtype`` (float32 or float64), backprop as matrix-vector products."""
    dtype = np.dtype(dtype)
    w1, w2 = np.array(W_HIDDEN, dtype), np.array(W_OUTPUT, dtype)
    b1, b2, lr = dtype.type(B_HIDDEN), dtype.type(B_OUTPUT), dtype.type(LR)
    x, t = np.array(X, dtype), np.array(TARGET, dtype)
    start = time.perf_counter()
    for _ in range(steps):
        h = _np_sig(w1 @ x + b1)  # (2,)
        o = _np_sig(w2 @ h + b2)  # (2,)
        do = (o - t) * o * (1 - o)  # dE/dz_out (2,)
        dh = (w2.T @ do) * h * (1 - h)  # dE/dz_hidden (2,)
        w2 = w2 - lr * np.outer(do, h)
        w1 = w1 - lr * np.outer(dh, x)
    seconds = time.perf_counter() - start
    o = _np_sig(w2 @ _np_sig(w1 @ x + b1) + b2)
    return float(np.sum(0.5 * (t - o) ** 2)), [w1.tolist(), w2.tolist()], seconds


def tutorial_torch(steps: int, dtype: str = "float64"):
    """PyTorch eager: autograd for the gradients, torch.optim.SGD for the update, biases requires_grad=False."""
    with _torch_threads(TORCH_THREADS) as torch:
        return _tutorial_torch(torch, steps, dtype)


def _tutorial_torch(torch, steps: int, dtype: str):
    dt = getattr(torch, dtype)
    w1 = torch.tensor(W_HIDDEN, dtype=dt, requires_grad=True)
    w2 = torch.tensor(W_OUTPUT, dtype=dt, requires_grad=True)
    b1 = torch.tensor(B_HIDDEN, dtype=dt, requires_grad=False)
    b2 = torch.tensor(B_OUTPUT, dtype=dt, requires_grad=False)
    x, t = torch.tensor(X, dtype=dt), torch.tensor(TARGET, dtype=dt)
    opt = torch.optim.SGD([w1, w2], lr=LR)

    def loss_of():
        o = torch.sigmoid(w2 @ torch.sigmoid(w1 @ x + b1) + b2)
        return 0.5 * torch.sum((t - o) ** 2)

    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_of().backward()
        opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        final = float(loss_of())
    return final, [w1.detach().tolist(), w2.detach().tolist()], seconds


@functools.lru_cache(maxsize=None)
def tutorial_setup(dtype: str, grads: str = "manual"):
    """(net, params, batch, trainer) for tutorial 000 in ``dtype``; cached so its jitted step compiles once."""
    import jax.numpy as jnp

    import jaxbp

    net = jaxbp.mlp([2, 2, 2], "sigmoid", bias="shared", train_bias=False)
    params = tutorial_params(net, dtype)
    batch = (jnp.asarray(X, dtype), jnp.asarray(TARGET, dtype))
    trainer = jaxbp.make_trainer(net, "half_sse", learning_rate=LR, grads=grads)
    return net, params, batch, trainer


def tutorial_params(net, dtype: str):
    """Tutorial 000's starting weights and frozen biases as jaxbp params of ``net`` in ``dtype``."""
    return net.params_from([W_HIDDEN, W_OUTPUT], [B_HIDDEN, B_OUTPUT], dtype=np.dtype(dtype))


def tutorial_naive_jax(steps: int, dtype: str = "float64"):
    """A Python loop calling jaxbp's jitted ``trainer.step`` once per step (the step compiles before timing)."""
    import jax

    import jaxbp

    net, params, batch, trainer = tutorial_setup(dtype, "manual")
    state = trainer.init(params)
    jax.block_until_ready(trainer.step(state, batch))  # compile (a no-op after the first call)
    start = time.perf_counter()
    for _ in range(steps):
        state, _ = trainer.step(state, batch)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - start
    final = float(jaxbp.loss_fn(net, "half_sse")(state.params, *batch))
    return final, [np.asarray(state.params[name]["w"]).tolist() for name in net.param_nodes], seconds


@functools.lru_cache(maxsize=None)
def _raw_scan_program(steps: int, dtype: str):
    """The compiled reference: (w1 (2, 2), w2 (2, 2)) -> ((w1, w2) after ``steps`` updates, losses (steps,))."""
    import jax
    import jax.numpy as jnp

    x, t = jnp.asarray(X, dtype), jnp.asarray(TARGET, dtype)
    b1, b2 = jnp.asarray(B_HIDDEN, dtype), jnp.asarray(B_OUTPUT, dtype)

    def step(carry, _):
        w1, w2 = carry
        h = jax.nn.sigmoid(w1 @ x + b1)  # (2,)
        o = jax.nn.sigmoid(w2 @ h + b2)  # (2,)
        loss = 0.5 * jnp.sum((t - o) ** 2)  # recorded per step, as any training loop would
        do = (o - t) * o * (1 - o)  # dE/dz_out
        dh = (w2.T @ do) * h * (1 - h)  # dE/dz_hidden
        return (w1 - LR * jnp.outer(dh, x), w2 - LR * jnp.outer(do, h)), loss

    def train(w1, w2):
        return jax.lax.scan(step, (w1, w2), None, length=steps)

    w = jnp.asarray(W_HIDDEN, dtype)
    return jax.jit(train).lower(w, w).compile()


def tutorial_raw_scan(steps: int, dtype: str = "float64"):
    """Reference floor: a minimal hand-written JAX step (no jaxbp) in one compiled ``lax.scan`` over all steps.

    Timed: one call of the compiled program plus block_until_ready; compiling happens before the clock.
    """
    import jax
    import jax.numpy as jnp

    program = _raw_scan_program(steps, dtype)
    w1, w2 = jnp.asarray(W_HIDDEN, dtype), jnp.asarray(W_OUTPUT, dtype)
    jax.block_until_ready((w1, w2))
    start = time.perf_counter()
    (w1, w2), _ = program(w1, w2)
    jax.block_until_ready((w1, w2))
    seconds = time.perf_counter() - start
    w1, w2 = np.asarray(w1, np.float64).tolist(), np.asarray(w2, np.float64).tolist()
    return _loss_in(w1, w2, dtype), [w1, w2], seconds


def _loss_in(w1, w2, dtype: str) -> float:
    """The tutorial loss of weights w1, w2 evaluated in numpy ``dtype``."""
    dt = np.dtype(dtype)
    h = _np_sig(np.array(w1, dt) @ np.array(X, dt) + dt.type(B_HIDDEN))
    o = _np_sig(np.array(w2, dt) @ h + dt.type(B_OUTPUT))
    return float(np.sum(0.5 * (np.array(TARGET, dt) - o) ** 2))


# -- digits: 64-128-64-10 ReLU MLP, softmax cross-entropy, SGD lr 0.1, batch 32 ----------------------

DIGITS_HIDDEN = (128, 64)
DIGITS_LR = 0.1
DIGITS_BATCH = 32


@functools.lru_cache(maxsize=None)
def digits_split(seed: int = 0):
    """The digits experiment's split (``jaxbp.experiments.digits.load_split``) in float32.

    Returns x_train (1437, 64), x_test (360, 64) and int32 y_train (1437,), y_test (360,).
    """
    import sklearn  # noqa: F401  (ImportError without it: the harness skips the digits rows)

    from jaxbp.experiments.digits import load_split

    x_tr, y_tr, x_te, y_te = load_split(seed, np.float32)
    return x_tr, x_te, y_tr, y_te


def digits_sklearn(epochs: int, seed: int = 0):
    """scikit-learn MLPClassifier, plain SGD, no momentum or L2, ``epochs`` full passes; timed: ``fit``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x_tr, x_te, y_tr, y_te = digits_split()
    model = MLPClassifier(
        hidden_layer_sizes=DIGITS_HIDDEN, activation="relu", solver="sgd", momentum=0, nesterovs_momentum=False,
        alpha=0, batch_size=DIGITS_BATCH, learning_rate_init=DIGITS_LR, max_iter=epochs, shuffle=True, tol=0,
        n_iter_no_change=10**9, random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_tr, y_tr)
        seconds = time.perf_counter() - start
    proba = np.clip(model.predict_proba(x_tr), 1e-12, 1.0)
    final = float(-np.mean(np.log(proba[np.arange(len(y_tr)), y_tr])))
    return final, float(np.mean(model.predict(x_te) == y_te)), seconds


def digits_torch(epochs: int, seed: int = 0):
    """PyTorch eager, float32: Linear-ReLU-Linear-ReLU-Linear, CrossEntropyLoss, torch.optim.SGD(lr 0.1).

    A fresh permutation each epoch; the last partial batch is dropped, as jaxbp's fit does.
    Timed: the epoch loop only.
    """
    with _torch_threads(TORCH_THREADS) as torch:
        return _digits_torch(torch, epochs, seed)


def _digits_torch(torch, epochs: int, seed: int):
    torch.manual_seed(seed)
    x_tr, x_te, y_tr, y_te = (torch.from_numpy(a) for a in digits_split())
    y_tr = y_tr.long()
    model = torch.nn.Sequential(
        torch.nn.Linear(64, DIGITS_HIDDEN[0]), torch.nn.ReLU(),
        torch.nn.Linear(DIGITS_HIDDEN[0], DIGITS_HIDDEN[1]), torch.nn.ReLU(),
        torch.nn.Linear(DIGITS_HIDDEN[1], 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=DIGITS_LR)
    seconds = _train_epochs(torch, model, opt, x_tr, y_tr, epochs, DIGITS_BATCH, seed)
    return (*_final_loss_and_accuracy(torch, model, (x_tr, y_tr), (x_te, y_te.long())), seconds)


def _train_epochs(torch, model, opt, x, y, epochs: int, batch: int, seed: int, after_step=None) -> float:
    """Minibatch SGD epochs with CrossEntropyLoss: a fresh permutation each epoch, the last partial batch
    dropped (as jaxbp's fit does); ``after_step()`` after every update. Returns the seconds the loop took."""
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = x.shape[0] // batch
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=gen)
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            if after_step is not None:
                after_step()
    return time.perf_counter() - start


def _final_loss_and_accuracy(torch, model, train, test) -> tuple[float, float]:
    """The mean cross-entropy on the training data and the accuracy on the test data."""
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(train[0]), train[1]))
        accuracy = float((model(test[0]).argmax(dim=1) == test[1]).float().mean())
    return final, accuracy

# -- digits CNN: digits_cnn's network, data, batch size and optimizer ----------------------------------
# conv2d(16, 3x3, same) -> ReLU -> max_pool2d(2) -> flatten -> dense(10), softmax cross-entropy, on the
# digits as 8x8x1 images with their four one-pixel shifts (``jaxbp.experiments.digits_cnn``), batch 32,
# SGD with momentum 0.9 and a learning rate decayed from 0.03 to 0 by a cosine over every update.

CNN_BATCH = 32
CNN_LR = 0.03
CNN_MOMENTUM = 0.9


@functools.lru_cache(maxsize=None)
def cnn_split(dtype: str = "float32", examples: int | None = None):
    """digits_cnn's images (n, 8, 8, 1) in ``dtype``: x_train, x_test, int32 y_train, y_test; the first
    ``examples`` training images only, when given."""
    import sklearn  # noqa: F401  (ImportError without it: the harness skips the rows)

    from jaxbp.experiments.digits_cnn import load_augmented

    x_tr, y_tr, x_te, y_te = load_augmented()
    x_tr, y_tr = x_tr[:examples], y_tr[:examples]
    return x_tr.astype(dtype), x_te.astype(dtype), y_tr, y_te


def cosine_factor(step: int, total: int) -> float:
    """optax.cosine_decay_schedule's factor at ``step`` of ``total`` updates (alpha 0): 1/2 (1 + cos(pi t / T))."""
    return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


def cnn_torch_model(torch, params=None, dtype: str = "float32"):
    """The CNN in torch (NCHW), with jaxbp's ``params`` copied in when given (else torch's own init).

    jaxbp keeps the conv weights as (kh, kw, in, out) on NHWC images and flattens (4, 4, 16) in that
    order; torch keeps (out, in, kh, kw) and flattens (16, 4, 4): the weights are moved to match.
    """
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(16 * 4 * 4, 10)).to(getattr(torch, dtype))
    if params is not None:
        w = np.asarray(params["logits"]["w"])  # (10, 256), inputs in (h, w, c) order
        with torch.no_grad():
            model[0].weight.copy_(torch.from_numpy(np.transpose(np.asarray(params["conv"]["w"]), (3, 2, 0, 1)).copy()))
            model[0].bias.copy_(torch.from_numpy(np.array(params["conv"]["b"])))
            model[4].weight.copy_(torch.from_numpy(w.reshape(10, 4, 4, 16).transpose(0, 3, 1, 2).reshape(10, 256).copy()))
            model[4].bias.copy_(torch.from_numpy(np.array(params["logits"]["b"])))
    return model


def cnn_torch_grads(params, x, labels) -> tuple[float, dict]:
    """(mean softmax cross-entropy, its gradients in jaxbp's layout) of torch's CNN at jaxbp's float64 params.

    x: (n, 8, 8, 1) NHWC images, labels (n,) ints.
    """
    with _torch_threads(TORCH_THREADS) as torch:
        model = cnn_torch_model(torch, params, "float64")
        images = torch.from_numpy(np.ascontiguousarray(np.transpose(np.asarray(x, np.float64), (0, 3, 1, 2))))
        loss = torch.nn.functional.cross_entropy(model(images), torch.from_numpy(np.asarray(labels, np.int64)))
        loss.backward()
        dw = model[4].weight.grad.numpy().reshape(10, 16, 4, 4).transpose(0, 2, 3, 1).reshape(10, 256)
        return loss.item(), {"conv": {"w": np.transpose(model[0].weight.grad.numpy(), (2, 3, 1, 0)),
                                      "b": model[0].bias.grad.numpy()},
                             "logits": {"w": dw, "b": model[4].bias.grad.numpy()}}


def digits_cnn_torch(epochs: int, examples: int | None = None, seed: int = 0):
    """PyTorch eager, float32: the CNN with autograd, optim.SGD(momentum 0.9) and the cosine decay
    stepped every update (LambdaLR); a fresh permutation each epoch, the last partial batch dropped.
    Timed: the epoch loop only."""
    with _torch_threads(TORCH_THREADS) as torch:
        return _digits_cnn_torch(torch, epochs, examples, seed)


def _digits_cnn_torch(torch, epochs: int, examples: int | None, seed: int):
    torch.manual_seed(seed)
    x_tr, x_te, y_tr, y_te = cnn_split("float32", examples)
    x_tr, x_te = (torch.from_numpy(np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))) for a in (x_tr, x_te))
    y_tr, y_te = torch.from_numpy(y_tr).long(), torch.from_numpy(y_te).long()
    model = cnn_torch_model(torch)
    total = epochs * (x_tr.shape[0] // CNN_BATCH)
    opt = torch.optim.SGD(model.parameters(), lr=CNN_LR, momentum=CNN_MOMENTUM)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, total))
    seconds = _train_epochs(torch, model, opt, x_tr, y_tr, epochs, CNN_BATCH, seed, after_step=schedule.step)
    return (*_final_loss_and_accuracy(torch, model, (x_tr, y_tr), (x_te, y_te)), seconds)

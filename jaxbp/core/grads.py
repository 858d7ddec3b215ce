"""Three routes to the same gradient, and a per-parameter report that compares them.

  manual_value_and_grad(graph, loss)    the hand-written rules, walked backwards node by node
  autodiff_value_and_grad(graph, loss)  jax.value_and_grad of the same forward and loss value
  finite_difference_grad(f, params)     central differences, one parameter at a time

The first two return functions with one signature, ``fn(params, x, target) -> (value, grads)``,
so any caller can swap one for the other. ``grads`` has exactly the tree structure of ``params``.

``compare_grads`` works on any two gradient pytrees, so it checks a user's own backward rules too;
``check_op`` checks one op's backward rule against ``jax.vjp`` element by element.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxbp.core import checks
from jaxbp.core.graph import Graph
from jaxbp.core.losses import Loss, get_loss
from jaxbp.core.op import Op
from jaxbp.core.types import Array, NameMap, Params

GRAD_METHODS = ("manual", "autodiff")


_APPLIES_AGAIN = {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def _check_loss_fits(graph: Graph, loss: Loss) -> None:
    """Losses over classes need one vector of scores per example; warn where a loss repeats the output's activation."""
    if loss.integer_labels_ok and len(graph.output_shape) != 1:
        raise ValueError(f"loss {loss.name!r} needs one vector of class scores per example, but the graph's "
                         f"output '{graph.output}' has shape {graph.output_shape}")
    last = graph.by_name[graph.output].op
    again = _APPLIES_AGAIN.get(loss.name)
    if again is not None and getattr(last, "name", None) == again:
        other = ", or use cross_entropy (on probabilities)" if again == "softmax" else ""
        warnings.warn(f"the output '{graph.output}' is a {again}, and {loss.name} applies {again} to it again; "
                      f"end on an identity (logits){other}", UserWarning, stacklevel=3)


def manual_full(graph: Graph, loss: Loss | str) -> Callable:
    """fn(params, x, target) -> (loss value, grads, d_inputs) by the hand-written rules, unchecked."""
    loss = get_loss(loss)

    def run(params: Params, x, target=None):
        return _manual_pass(graph, loss, params, x, target)[:3]

    return run


def _batched_pass(graph: Graph, params: Params, x, target, **forward):
    """(output, target, cache) of a forward pass, output and target with a batch axis; ``forward``: the
    keywords of ``Graph.forward`` (state, key, training)."""
    output, cache = graph.forward(params, x, **forward)
    return (output[None] if cache.single else output), _batched(target, cache.single), cache


def _manual_pass(graph: Graph, loss: Loss, params: Params, x, target, **forward):
    """(loss value, grads, d_inputs, cache) by the hand-written rules."""
    output, target, cache = _batched_pass(graph, params, x, target, **forward)
    value, d_output = loss(output, target)
    grads, d_inputs = graph.backward(params, cache, d_output[0] if cache.single else d_output)
    return value, grads, d_inputs, cache


def batched(graph: Graph, x, target):
    """(x, target) with a batch axis: a single example becomes a batch of one (shapes only, traceable)."""
    name, shape = graph.inputs[0]
    first = x[name] if isinstance(x, dict) else x
    if jnp.ndim(first) != len(shape):
        return x, target
    return jax.tree.map(lambda a: jnp.asarray(a)[None], x), _batched(target, True)


def _batched(target, single: bool):
    if target is None:
        return None
    target = jnp.asarray(target)
    return target[None] if single else target


def _checked(graph: Graph, loss: Loss, route: Callable) -> Callable:
    """``route(params, x, target) -> (value, grads)``, after checking params, x and target."""

    def value_and_grad(params: Params, x, target=None):
        checks.check_params(graph, params)
        checks.check_batch(graph, loss, x, target)
        checks.check_finite_params(params)
        checks.check_finite_batch(x, target)
        return route(params, x, target)

    return value_and_grad


def manual_value_and_grad(graph: Graph, loss: Loss | str) -> Callable:
    """fn(params, x, target) -> (loss value, grads) by the hand-written backward rules."""
    loss = get_loss(loss)
    _check_loss_fits(graph, loss)
    run = manual_full(graph, loss)
    return _checked(graph, loss, lambda params, x, target: run(params, x, target)[:2])


def input_grads(graph: Graph, loss: Loss | str) -> Callable:
    """fn(params, x, target) -> (loss value, d_inputs) by the hand-written rules: dL/dx, in x's structure.

    >>> from jaxbp import graph, node
    >>> circuit = graph({"a": (), "b": ()}, [node("L", "multiply", "a", "b")])
    >>> value, d = input_grads(circuit, "output")({}, {"a": 2.0, "b": -3.0})
    >>> float(value), {k: float(v) for k, v in d.items()}
    (-6.0, {'a': -3.0, 'b': 2.0})
    """
    loss = get_loss(loss)
    _check_loss_fits(graph, loss)
    run = manual_full(graph, loss)
    return _checked(graph, loss, lambda params, x, target: run(params, x, target)[::2])


def loss_fn(graph: Graph, loss: Loss | str) -> Callable:
    """fn(params, x, target) -> loss value, with no gradient (for jax.grad, finite differences, evaluation)."""
    loss = get_loss(loss)

    def value(params, x, target=None):
        output, target, _ = _batched_pass(graph, params, x, target)
        return loss.value(output, target)

    return value


def autodiff_value_and_grad(graph: Graph, loss: Loss | str) -> Callable:
    """fn(params, x, target) -> (loss value, grads) by jax.value_and_grad; same signature as manual."""
    loss = get_loss(loss)
    _check_loss_fits(graph, loss)
    return _checked(graph, loss, jax.value_and_grad(loss_fn(graph, loss)))


def value_and_grad(graph: Graph, loss: Loss | str, method: str = "manual") -> Callable:
    """The gradient route named by ``method``: "manual" (hand-written rules) or "autodiff" (jax.grad)."""
    if method == "manual":
        return manual_value_and_grad(graph, loss)
    if method == "autodiff":
        return autodiff_value_and_grad(graph, loss)
    raise ValueError(f"grads: expected one of {GRAD_METHODS}, got {method!r}")


def stateful_value_and_grad(graph: Graph, loss: Loss | str, method: str = "manual") -> Callable:
    """fn(params, state, key, x, target) -> ((loss value, new state), grads): a training-mode pass
    that also carries the graph's state (``Graph.init_state``) and hands random ops their keys.

    ``method`` as for ``value_and_grad``; the state is never differentiated. Unchecked: the
    trainer checks params, state and data before it traces this.
    """
    if method not in GRAD_METHODS:
        raise ValueError(f"grads: expected one of {GRAD_METHODS}, got {method!r}")
    loss = get_loss(loss)
    _check_loss_fits(graph, loss)

    def manual(params, state, key, x, target=None):
        value, grads, _, cache = _manual_pass(graph, loss, params, x, target, state=state, key=key, training=True)
        return (value, cache.state), grads

    def value_and_state(params, state, key, x, target=None):
        output, target, cache = _batched_pass(graph, params, x, target, state=state, key=key, training=True)
        return loss.value(output, target), cache.state

    return manual if method == "manual" else jax.value_and_grad(value_and_state, has_aux=True)


def finite_difference_grad(f: Callable[..., Array], params: Any, *args, eps: float | None = None) -> Any:
    """Central differences (f(p + eps e_i) - f(p - eps e_i)) / 2 eps for every scalar parameter.

    ``f(params, *args)`` returns a scalar. The default ``eps`` is 1e-6 in float64 and 1e-2 in
    float32 (about the cube root of the dtype's epsilon, which balances truncation and rounding).
    """
    flat, unravel = ravel_pytree(params)
    if eps is None:
        eps = 1e-6 if flat.dtype == jnp.float64 else 1e-2

    @jax.jit  # one compiled program; op-by-op execution of the map would be several times slower
    def all_differences(flat, args):
        def one(i):
            step = jnp.zeros_like(flat).at[i].set(eps)
            return (f(unravel(flat + step), *args) - f(unravel(flat - step), *args)) / (2 * eps)

        return jax.lax.map(one, jnp.arange(flat.size), batch_size=min(256, max(1, flat.size)))

    return unravel(all_differences(flat, args).astype(flat.dtype))


# -- the comparison report --------------------------------------------------------------------


def default_tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for manual versus autodiff: tight enough to catch any real bug in the rules."""
    return (1e-10, 1e-12) if jnp.dtype(dtype) == jnp.float64 else (1e-4, 1e-6)


def default_fd_tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for finite differences, which carry truncation error of order eps^2."""
    return (1e-6, 1e-8) if jnp.dtype(dtype) == jnp.float64 else (5e-2, 5e-3)


@dataclasses.dataclass(frozen=True)
class GradRow:
    """One scalar parameter: its name, both gradient values, and how far apart they are."""

    name: str
    candidate: float
    reference: float
    abs_err: float
    rel_err: float
    ok: bool
    fd: float | None = None
    fd_ok: bool | None = None
    kind: str = "parameter"  # or "input": the gradient with respect to an input


@dataclasses.dataclass(frozen=True)
class GradReport:
    """Per-parameter comparison of a candidate gradient (e.g. manual) against a reference (jax.grad)."""

    rows: tuple[GradRow, ...]
    labels: tuple[str, str]
    rtol: float
    atol: float
    fd_tol: tuple[float, float] | None = None
    kinks: tuple[str, ...] = ()  # where the loss has a kink at this point, e.g. "relu node 'r' at 0"

    @property
    def ok(self) -> bool:
        """The verdict: the candidate equals the reference everywhere (finite differences only add notes)."""
        return all(r.ok for r in self.rows)

    @property
    def fd_notes(self) -> list[GradRow]:
        """The elements where both routes agree but finite differences cannot follow (a kink, rounding)."""
        return [r for r in self.rows if r.ok and r.fd_ok is False]

    @property
    def max_abs_err(self) -> float:
        return max((r.abs_err for r in self.rows), default=0.0)

    @property
    def max_rel_err(self) -> float:
        return max((r.rel_err for r in self.rows), default=0.0)

    @property
    def failures(self) -> list[GradRow]:
        return [r for r in self.rows if not r.ok]

    def __getitem__(self, name: str) -> GradRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def table(self) -> str:
        """The report as a fixed-width table, one line per scalar parameter."""
        a, b = self.labels
        has_fd = any(r.fd is not None for r in self.rows)
        width = max([len("parameter")] + [len(r.name) for r in self.rows])
        head = f"{'parameter':<{width}}  {a:>22}  {b:>22}"
        head += f"  {'finite diff':>22}" if has_fd else ""
        head += f"  {'abs err':>9}  {'rel err':>9}  ok"
        lines = [head, "-" * len(head)]
        n_inputs = sum(r.kind == "input" for r in self.rows)
        for k, r in enumerate(self.rows):
            if r.kind == "input" and (k == 0 or self.rows[k - 1].kind != "input"):
                lines.append(f"{'inputs (d loss / d input value):':<{width}}")
            line = f"{r.name:<{width}}  {r.candidate:>22.15g}  {r.reference:>22.15g}"
            if has_fd:
                line += f"  {r.fd:>22.15g}" if r.fd is not None else f"  {'':>22}"
            mark = "FAIL" if not r.ok else "ok*" if r.fd_ok is False else "ok"
            line += f"  {r.abs_err:>9.2e}  {r.rel_err:>9.2e}  {mark}"
            lines.append(line)
        tol = f"pass if |{a} - {b}| <= {self.atol:g} + {self.rtol:g} * |{b}|"
        if self.fd_tol is not None:
            tol += f"; finite diff within {self.fd_tol[1]:g} + {self.fd_tol[0]:g} * |{b}|"
        verdict = "all agree" if self.ok else f"{len(self.failures)} of {len(self.rows)} disagree"
        counted = f"{len(self.rows) - n_inputs} parameters" + (f" and {n_inputs} input value{'s' * (n_inputs != 1)}" if n_inputs else "")
        lines.append(f"{counted}; {tol}; {verdict}")
        if self.fd_notes:
            lines.append(self.fd_note())
        return "\n".join(lines)

    def fd_note(self) -> str:
        """One line on the elements (marked ok*) where finite differences differ from two agreeing routes."""
        a, b = self.labels
        n = len(self.fd_notes)
        where = (f"the loss has a kink here: {'; '.join(self.kinks)}" if self.kinks else
                 "the loss is not smooth there, or rounding swamps the difference")
        return (f"note: at {n} element{'s' * (n != 1)} marked ok* ({self.fd_notes[0].name} first), {a} = {b} but finite "
                f"differences differ; {where}")

    __str__ = table

    def failure_message(self) -> str:
        a, b = self.labels
        parts = []
        for r in self.failures[:5]:
            msg = f"{r.name}: {a} = {r.candidate:.17g} but {b} = {r.reference:.17g} (abs err {r.abs_err:.3g}, rel err {r.rel_err:.3g})"
            if r.fd is not None:
                msg += f"; finite differences = {r.fd:.17g}"
            parts.append(msg)
        more = len(self.failures) - len(parts)
        return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")

    def assert_ok(self) -> None:
        """Raise AssertionError naming each disagreeing parameter and which side is which."""
        if not self.ok:
            raise AssertionError(f"gradients disagree ({self.labels[0]} is the candidate, {self.labels[1]} the reference): " + self.failure_message())


def _path_keys(path) -> tuple:
    keys = []
    for k in path:
        for attr in ("idx", "key", "name"):
            if hasattr(k, attr):
                keys.append(getattr(k, attr))
                break
    return tuple(keys)


def _leaf_name(path, index: tuple[int, ...]) -> str:
    keys = _path_keys(path)
    if keys and all(isinstance(k, str) for k in keys):
        base = ".".join(keys)  # jaxbp's own params: node.leaf, e.g. dense0.w; inputs: their name
    else:
        base = jax.tree_util.keystr(path) or "value"
    return base + (f"[{','.join(map(str, index))}]" if index else "")


def _names_by_position(names: NameMap | None) -> dict[tuple, str]:
    """Invert a name map {"w5": (1, "w", (0, 0))} to {(1, "w", (0, 0)): "w5"}."""
    if not names:
        return {}
    out = {}
    for name, where in names.items():
        *keys, index = where
        out[(*keys, tuple(index))] = name
    return out


def _leaves(tree) -> list[tuple[tuple, str, np.ndarray]]:
    """[(path keys, default name, values as float64)] for every leaf, in tree order."""
    return [(_path_keys(path), _leaf_name(path, ()), np.asarray(leaf, dtype=np.float64))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)]


def _index_suffixes(shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    """[(index, "[i,j]")] for every element of an array of ``shape``, in C order ("" for a scalar)."""
    return [(index, f"[{','.join(map(str, index))}]" if index else "") for index in np.ndindex(shape)]


def compare_grads(
    candidate: Any,
    reference: Any,
    *,
    names: NameMap | None = None,
    fd: Any = None,
    labels: tuple[str, str] = ("manual", "jax.grad"),
    rtol: float | None = None,
    atol: float | None = None,
    dtype=None,
    kind: str = "parameter",
) -> GradReport:
    """Compare two gradient pytrees parameter by parameter.

    ``names`` maps display names to positions, e.g. {"w5": (1, "w", (0, 0))} for layer 1's w[0, 0];
    unnamed scalars get a default name such as ``layers[1].w[0,1]``. ``fd`` is an optional third
    route (finite differences) with the same structure. Tolerances default by dtype
    (float64: rtol 1e-10, atol 1e-12). A row passes if |candidate - reference| <= atol + rtol |reference|.

    >>> report = compare_grads({"w": jnp.ones(2)}, {"w": jnp.ones(2)})
    >>> report.ok
    True
    """
    cand_def, ref_def = jax.tree.structure(candidate), jax.tree.structure(reference)
    if cand_def != ref_def:
        raise ValueError(f"compare_grads: {labels[0]} has structure {cand_def} but {labels[1]} has {ref_def}")
    for (path, c), r in zip(jax.tree_util.tree_leaves_with_path(candidate), jax.tree.leaves(reference)):
        if np.shape(c) != np.shape(r):
            raise ValueError(f"compare_grads: {jax.tree_util.keystr(path)} has shape {np.shape(c)} in {labels[0]} but {np.shape(r)} in {labels[1]}")
    ref_leaves = jax.tree.leaves(reference)
    if dtype is None:
        dtype = jnp.result_type(*ref_leaves) if ref_leaves else jnp.float64
    d_rtol, d_atol = default_tolerance(dtype)
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    fd_rtol, fd_atol = default_fd_tolerance(dtype)
    named = _names_by_position(names)
    candidate_leaves, reference_leaves = _leaves(candidate), _leaves(reference)
    known = {(*keys, index) for keys, _, values in reference_leaves for index in np.ndindex(values.shape)} if named else ()
    unknown = [n for pos, n in named.items() if pos not in known]
    if unknown:
        raise ValueError(f"compare_grads: names {unknown} point at no parameter")
    fd_leaves = _leaves(fd) if fd is not None else None
    rows = []
    # the numbers element-wise in numpy (float64, as Python floats would be), the rows made once from them
    for k, ((keys, base, c), (_, _, r)) in enumerate(zip(candidate_leaves, reference_leaves)):
        with np.errstate(divide="ignore", invalid="ignore"):
            abs_err = np.abs(c - r)
            rel_err = np.where(r != 0, abs_err / np.abs(r), np.where(c == 0, 0.0, np.inf))
            ok = abs_err <= atol + rtol * np.abs(r)  # NaN compares False: a NaN never passes
            fd_value = fd_ok = [None] * c.size
            if fd_leaves is not None:
                f = fd_leaves[k][2]
                fd_value, fd_ok = f.ravel().tolist(), (np.abs(f - r) <= fd_atol + fd_rtol * np.abs(r)).ravel().tolist()
        numbers = zip(c.ravel().tolist(), r.ravel().tolist(), abs_err.ravel().tolist(), rel_err.ravel().tolist(),
                      ok.ravel().tolist(), fd_value, fd_ok)
        for (index, suffix), (cv, rv, ae, re, good, fv, fg) in zip(_index_suffixes(c.shape), numbers):
            name = named.get((*keys, index), base + suffix) if named else base + suffix
            rows.append(GradRow(name, cv, rv, ae, re, good, fv, fg, kind))
    return GradReport(tuple(rows), labels, rtol, atol, (fd_rtol, fd_atol) if fd is not None else None)


def check_gradients(
    candidate_value_and_grad: Callable,
    loss_value: Callable,
    params: Any,
    *args,
    names: NameMap | None = None,
    finite_differences: bool = True,
    labels: tuple[str, str] = ("manual", "jax.grad"),
    rtol: float | None = None,
    atol: float | None = None,
) -> GradReport:
    """Check anyone's gradient function against jax.grad (and finite differences) for one input.

    ``candidate_value_and_grad(params, *args)`` returns (value, grads), as jax.value_and_grad
    does: your own backward rules. ``loss_value(params, *args)`` returns the scalar loss they
    differentiate. A candidate whose value disagrees with ``loss_value`` raises ValueError, since
    its gradients would then be of some other function.
    """
    out = candidate_value_and_grad(params, *args)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"check_gradients: the candidate must return (value, grads), got {type(out).__name__}")
    value, candidate = out
    expected = loss_value(params, *args)
    rtol_v, atol_v = default_tolerance(jnp.result_type(expected))
    if not abs(float(value) - float(expected)) <= atol_v + rtol_v * abs(float(expected)):
        raise ValueError(
            f"check_gradients: the candidate's loss value {float(value):.17g} differs from loss_value's "
            f"{float(expected):.17g}; both must compute the same loss"
        )
    reference = jax.grad(loss_value)(params, *args)
    fd = finite_difference_grad(loss_value, params, *args) if finite_differences else None
    return compare_grads(candidate, reference, names=names, fd=fd, labels=labels, rtol=rtol, atol=atol)


def check_network(
    graph: Graph,
    loss: Loss | str,
    params: Params,
    x,
    target: Array | None = None,
    *,
    names: NameMap | None = None,
    input_names: NameMap | None = None,
    finite_differences: bool = True,
) -> GradReport:
    """The report of jaxbp's hand-written rules against jax.grad for one batch, parameters then inputs.

    ``names`` maps display names to parameter positions (node, leaf, index); ``input_names`` maps
    display names to input positions (input name, index), e.g. {"i1": ("x", (0,))}.
    """
    loss = get_loss(loss)
    _check_loss_fits(graph, loss)
    checks.check_params(graph, params)
    checks.check_batch(graph, loss, x, target)
    dtype = checks.params_dtype(params) or jnp.zeros(()).dtype
    for name, value in checks._input_dict(graph, x).items():
        checks.check_fits_dtype(value, f"x['{name}']", dtype)
    if target is not None:
        checks.check_fits_dtype(target, "target", dtype)
    xs = jax.tree.map(lambda v: jnp.asarray(v, dtype), checks._input_dict(graph, x))
    value_fn = loss_fn(graph, loss)

    @jax.jit  # every route in one compiled program: run op by op, each new shape of each op compiles on its own
    def every_route(params, xs, target):
        value, grads, d_inputs = manual_full(graph, loss)(params, xs, target)
        reference = jax.grad(value_fn, argnums=(0, 1))(params, xs, target)
        fd = None
        if finite_differences:
            fd = (finite_difference_grad(value_fn, params, xs, target) if params else {},
                  finite_difference_grad(lambda inputs, p, t: value_fn(p, inputs, t), xs, params, target))
        return value, grads, d_inputs, value_fn(params, xs, target), graph.forward(params, xs)[1].values, reference, fd

    value, grads, d_inputs, expected, values, (ref_params, ref_inputs), fd = every_route(params, xs, target)
    if not (math.isfinite(float(value)) and math.isfinite(float(expected))):
        raise NonFiniteLossError(_non_finite_loss(graph, loss, values, float(expected)))
    rtol_v, atol_v = default_tolerance(dtype)
    if not abs(float(value) - float(expected)) <= atol_v + rtol_v * abs(float(expected)):
        raise AssertionError(f"check_network: the manual forward's loss {float(value):.17g} differs from the reference "
                             f"{float(expected):.17g}")
    fd_params, fd_inputs = fd or (None, None)
    report = compare_grads(grads, ref_params, names=names, fd=fd_params, dtype=dtype)
    inputs = compare_grads(d_inputs, ref_inputs, names=input_names, fd=fd_inputs, dtype=dtype, kind="input")
    return dataclasses.replace(report, rows=report.rows + inputs.rows, kinks=_kinks(graph, values))


class NonFiniteLossError(ValueError):
    """The loss is nan or inf at the point to check: there is no gradient to compare."""


def _non_finite_loss(graph: Graph, loss: Loss, values: dict, value: float) -> str:
    """Which value first stops being finite, in the order the forward pass computes them."""
    for name in [*graph.input_names, *(n.name for n in graph.nodes)]:
        v = np.asarray(values[name], np.float64)
        bad = np.argwhere(~np.isfinite(v))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            what = f"node '{name}' ({graph.by_name[name].op.spec})" if name in graph.by_name else f"input '{name}'"
            return (f"the loss is {value} at this point, so there is no gradient to check: {what} is the first value "
                    f"that is not finite ({v[where]} at example {where[0] + 1}, element {list(where[1:])})")
    return (f"the loss is {value} at this point, so there is no gradient to check: every value is finite, but "
            f"{loss.name} of the output '{graph.output}' is not (check the target, and the output's range)")


# ops whose derivative jumps: finite differences across such a point follow neither side
_KINKED = {"relu": "at 0", "leaky_relu": "at 0", "maximum": "where both inputs are equal"}


def _kinks(graph: Graph, values: dict) -> tuple[str, ...]:
    """Where the loss has a kink at this point: e.g. "relu node 'r' at 0 (2 elements)"."""
    found = []
    for n in graph.nodes:
        kind = n.op.name.split("(")[0]
        if kind not in _KINKED:
            continue
        ins = [np.asarray(values[i]) for i in n.inputs]
        at = int(np.sum(ins[0] == ins[1]) if kind == "maximum" else np.sum(ins[0] == 0))
        if at:
            found.append(f"{kind} node '{n.name}' {_KINKED[kind]} ({at} element{'s' * (at != 1)})")
    return tuple(found)


# -- one op against jax.vjp ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpCheck:
    """An op's hand-written backward against jax.vjp of its forward, at every point tried."""

    op_name: str
    points: int  # how many points were tried
    worst_where: str  # which cotangent: "input 0", "param w", ...
    worst_index: tuple  # the element, (batch index, *per-example index)
    manual: float  # the rule's value there
    reference: float  # jax.vjp's value there
    worst_excess: float  # |manual - reference| - (atol + rtol |reference|): <= 0 everywhere means ok
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.worst_excess <= 0

    def __str__(self) -> str:
        verdict = "agrees" if self.ok else "DISAGREES"
        return (f"op {self.op_name!r} {verdict} with jax.vjp at {self.points} points (pass if |manual - vjp| <= "
                f"{self.atol:g} + {self.rtol:g} |vjp|); worst element: {self.worst_where}{list(self.worst_index)}, "
                f"manual {self.manual:.17g}, jax.vjp {self.reference:.17g}")

    def assert_ok(self) -> None:
        if not self.ok:
            raise AssertionError(str(self))


def check_op(
    op: Op,
    *inputs,
    params: dict | None = None,
    random_points: int = 5,
    seed: int = 0,
    rtol: float | None = None,
    atol: float | None = None,
) -> OpCheck:
    """Compare ``op.backward`` with ``jax.vjp`` of ``op.forward``, element by element.

    inputs   the points you choose, each (batch, *shape) as the op receives them
    params   the op's parameters, if it has any
    Then ``random_points`` more points: standard normal inputs (and params) of the same shapes, with
    a random cotangent each time; every other one at a batch of at least SEVERAL (3) examples, so a
    rule whose cotangents keep a batch of 1 is caught even when the point you give is one example. Returns the worst element over all points: which cotangent, which
    index, both values and the tolerance (float64: rtol 1e-10, atol 1e-12).

    >>> from jaxbp.core import ops
    >>> check_op(ops.multiply, jnp.array([2.0]), jnp.array([-3.0])).ok
    True
    """
    if not isinstance(op, Op):
        raise TypeError(f"check_op: expected an op, got {type(op).__name__}")
    if op.arity == 0:
        raise ValueError(f"check_op: op {op.name!r} has no inputs; its backward passes the cotangent through")
    if not inputs:
        raise ValueError("check_op: give at least one point: the op's inputs, each with a batch axis")
    if op.arity is not None and len(inputs) != op.arity:
        raise ValueError(f"check_op: op {op.name!r} takes {op.arity} inputs, got {len(inputs)}")
    inputs = tuple(jnp.asarray(x) for x in inputs)
    params = {} if params is None else jax.tree.map(jnp.asarray, params)
    dtype = jnp.result_type(*inputs, *jax.tree.leaves(params))
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.zeros(()).dtype
        inputs = tuple(x.astype(dtype) for x in inputs)
    d_rtol, d_atol = default_tolerance(dtype)
    rtol, atol = (d_rtol if rtol is None else rtol), (d_atol if atol is None else atol)
    rng = np.random.default_rng(seed)
    points = [(params, inputs, None)]
    for k in range(random_points):
        p = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=np.shape(v)), dtype), params)
        shapes = _point_shapes(inputs, several=k % 2 == 1)
        xs = tuple(jnp.asarray(rng.normal(size=shape), dtype) for shape in shapes)
        points.append((p, xs, rng))

    def output(p, *xs):
        return op.forward(p, *xs)[0]

    @jax.jit  # one compiled program per point shape: op by op, every primitive compiles at every shape
    def rule_and_reference(p, xs, dy):
        _, cache = op.forward(p, *xs)
        _, vjp = jax.vjp(output, p, *xs)
        return op.backward(p, cache, dy), vjp(dy)

    worst = None
    for p, xs, point_rng in points:
        y = jax.eval_shape(output, p, *xs)
        dy = jnp.ones(y.shape, y.dtype) if point_rng is None else jnp.asarray(point_rng.normal(size=y.shape), y.dtype)
        (dparams, dinputs), (ref_params, *ref_inputs) = rule_and_reference(p, xs, dy)
        if len(dinputs) != len(xs):
            raise AssertionError(f"check_op: op {op.name!r} returned {len(dinputs)} input cotangents for {len(xs)} inputs")
        pairs = [(f"input {k}", m, r) for k, (m, r) in enumerate(zip(dinputs, ref_inputs))]
        for path, r in jax.tree_util.tree_leaves_with_path(ref_params):
            m = _leaf_at(dparams, path)
            pairs.append((f"param {jax.tree_util.keystr(path)}", m, r))
        for where, m, r in pairs:
            found = _worst_element(op.name, where, m, r, rtol, atol)
            if found is not None and (worst is None or found[0] > worst[0]):
                worst = found
    if worst is None:
        return OpCheck(op.name, len(points), "nothing", (), 0.0, 0.0, -math.inf, rtol, atol)
    return OpCheck(op.name, len(points), worst[1], worst[2], worst[3], worst[4], worst[0], rtol, atol)


def _worst_element(op_name: str, where: str, rule, reference, rtol: float, atol: float) -> tuple | None:
    """(excess over the tolerance, where, index, rule's value, reference value) at the element that
    exceeds it most; None for an empty cotangent. Equal values, inf and nan included, never exceed it."""
    m, r = np.asarray(rule, np.float64), np.asarray(reference, np.float64)
    if m.shape != r.shape:
        raise AssertionError(f"check_op: op {op_name!r} gives {where} a cotangent of shape {m.shape}, jax.vjp {r.shape}")
    with np.errstate(invalid="ignore"):
        excess = np.abs(m - r) - (atol + rtol * np.abs(r))
    both_same = (m == r) | (np.isnan(m) & np.isnan(r))  # inf == inf and nan where jax.grad has nan pass
    excess = np.where(both_same, -np.inf, np.where(np.isnan(excess), np.inf, excess))
    if excess.size == 0:
        return None
    index = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return float(excess[index]), where, tuple(int(i) for i in index), float(m[index]), float(r[index])


SEVERAL = 3  # every other random point of check_op is a batch at least this large


def _point_shapes(inputs: tuple, several: bool) -> list[tuple]:
    """The inputs' shapes; with ``several``, their common batch grown to at least SEVERAL examples.

    A rule that returns a (1, n) cotangent for a (batch, n) value agrees with jax.vjp at batch 1;
    only a batch of several examples shows it.
    """
    shapes = [tuple(x.shape) for x in inputs]
    batches = {s[0] for s in shapes if s}
    if not several or len(batches) != 1 or not all(shapes) or max(batches) >= SEVERAL:
        return shapes
    return [(SEVERAL, *s[1:]) for s in shapes]


def _leaf_at(tree, path):
    node = tree
    for key in path:
        k = getattr(key, "key", getattr(key, "idx", getattr(key, "name", None)))
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            raise AssertionError(f"check_op: the backward rule returned no cotangent for param {jax.tree_util.keystr(path)}") from None
    return node

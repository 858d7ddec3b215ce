"""The setup lines of a walkthrough: what the graph is, the loss as a formula, the optimizer, the notation."""

from __future__ import annotations

from jaxbp.core.graph import chain_layers
from jaxbp.core.losses import get_loss
from jaxbp.teach import notation as notate
from jaxbp.teach.names import Names

SETUP = "Setup"


def graph_line(graph) -> str:
    layers = chain_layers(graph)
    if layers:
        widths = (layers[0].in_dim,) + tuple(l.out_dim for l in layers)
        return f"network: {' -> '.join(map(str, widths))}; " + "; ".join(
            f"layer {l}: {layer.activation.spec}, bias {layer.bias}" for l, layer in enumerate(layers))
    inputs = ", ".join(f"{n} {list(s)}" if s else f"{n} (scalar)" for n, s in graph.inputs)
    count = f"{len(graph.nodes)} node" + ("" if len(graph.nodes) == 1 else "s")
    return f"graph: inputs {inputs}; {count}; output {graph.output}"


def loss_formula(preset) -> str:
    """The loss as a formula of the example's names: E_total = 1/2 (target_1 - out_o1)^2 + ..."""
    nm = Names(preset)
    loss = get_loss(preset.loss, preset.reduction)
    y = preset.graph.output
    size = nm.out_size
    E = preset.loss_name
    if loss.name == "softmax_cross_entropy":
        return f"{E} = -log p[label], p = softmax({_vector(nm, y)})"
    if loss.name == "multiclass_hinge":
        return f"{E} = sum over the wrong classes j of max(0, {y}_j - {y}_label + 1)"
    if loss.name == "d_output":
        return f"{E} = sum_j d_output_j * {y}_j (d_output given)"
    if size > 6:
        term = notate.text(loss.text.formula.fill({"$y": _s(f"{y}_j"), "$t": _s("target_j"), "$p": _s("p_j"),
                                                   "$n": _s(str(size))}), 6)
        return f"{E} = sum over the {size} outputs j of {term}"
    terms = []
    for j in range(size):
        env = {"$y": _s(nm.element(y, j)), "$t": _s(nm.target(j)), "$p": _s(f"p[{j}]"), "$n": _s(str(size))}
        terms.append(notate.text(loss.text.formula.fill(env), 6))
    return f"{E} = {' + '.join(terms)}"


def _s(name):
    from jaxbp.core.notation import sym

    return sym(name)


def _vector(nm, y) -> str:
    names = nm.elements(y)
    return ", ".join(names) if len(names) <= 6 else f"{names[0]}, ..., {names[-1]}"


def setup(w) -> None:
    tr, p = w.tr, w.tr.preset
    loss = get_loss(p.loss, p.reduction)
    say = lambda text: w.out.say("setup", SETUP, text)
    say(graph_line(tr.graph))
    batch = f"batch of {tr.batch}"
    if loss.name == "d_output":
        say(f"no loss: the backward pass starts from the given d{p.loss_name}/d{tr.graph.output} "
            f"(the gradient of {p.loss_name} = sum d_output * output); {batch}")
    elif loss.name == "output":
        say(f"no separate loss: {p.loss_name} is the graph's output {tr.graph.output} itself; {batch}")
    else:
        say(f"loss: {loss.name} ({loss_formula(p)}), reduction over the batch: {loss.reduction}; {batch}")
    if tr.graph.param_nodes:
        from jaxbp.teach.update import title

        say(f"optimizer: {title(p.optimizer, p.learning_rate)}")
    say(f"numbers: {tr.dtype}")
    say(f"notation: d{p.loss_name}/dv is the total derivative (every path from the loss to v); ∂y/∂x is a local "
        f"derivative (one op's own rule); delta_z = d{p.loss_name}/dz for a weighted sum z")
    if tr.steps_before:
        say(f"after {tr.steps_before} update{'s' if tr.steps_before != 1 else ''} ({p.optimizer}) from the example's numbers")
    if p.notes:
        say(p.notes)

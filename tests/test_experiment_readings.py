"""How tutorial_001 classifies a seed, on hand-made numbers whose answer is known in closed form
(plain numpy, nothing trained)."""

import math
import sys

import numpy as np
import pytest

from jaxbp.experiments import common, tutorial_001

X = np.linspace(-1.0, 1.0, 64)[:, None]
Y = np.concatenate([np.maximum(X, 0), np.maximum(-X, 0)], axis=1)
# 1/2 mean(relu(x)^2) on the 64 points x = (2k - 63)/63: the positive ones are m/63 for odd m = 1..63, and
# the sum of the first 32 odd squares is 32 * 63 * 65 / 3
ZERO_OUTPUT_LOSS = (32 * 63 * 65 / 3) / (2 * 64 * 63**2)


def forward(w0, b0, w1, b1):
    """(z_hidden, z_output, loss) of the 1-2-2 ReLU network on the task, in numpy."""
    z_h = X @ np.asarray(w0, float).T + np.asarray(b0, float)
    z_o = np.maximum(z_h, 0) @ np.asarray(w1, float).T + np.asarray(b1, float)
    loss = float(np.mean(0.5 * np.sum((np.maximum(z_o, 0) - Y) ** 2, axis=1)))
    return z_h, z_o, loss


def falling(start, end, epochs=100):
    """A loss curve falling geometrically from ``start`` to ``end`` (before each update)."""
    return np.geomspace(start, end, epochs + 1)[:-1], end


# --- tutorial_001 --------------------------------------------------------------------------------

def test_the_zero_output_loss_is_the_closed_form():
    assert ZERO_OUTPUT_LOSS == pytest.approx(0.5 * np.mean(Y[:, 0] ** 2), rel=1e-14)
    assert ZERO_OUTPUT_LOSS == pytest.approx(0.5 * np.mean(Y[:, 1] ** 2), rel=1e-14)
    assert ZERO_OUTPUT_LOSS == pytest.approx(0.0859788359788, rel=1e-12)


@pytest.mark.parametrize("history, final, outcome", [
    (*falling(0.3, 5e-5), "converged"),                        # below 1e-4
    (*falling(0.3, 2e-4), "still falling"),                    # above it, and falling fast
    (np.r_[np.geomspace(0.3, 0.1, 90), np.full(10, 0.1)], 0.0995, "plateaued"),   # 0.5% over the last 10 epochs
    (np.r_[np.geomspace(0.3, 0.1, 90), np.full(10, 0.1)], 0.0985, "still falling"),  # 1.5%
    (np.full(100, 0.1), 0.1001, "plateaued"),                  # rising is not falling
    (np.full(100, 0.1), math.nan, "diverged"),
    (np.r_[np.full(50, 0.1), np.inf, np.full(49, 0.1)], 0.1, "diverged"),
])
def test_loss_outcome(history, final, outcome):
    assert tutorial_001.loss_outcome(history, final)[0] == outcome


@pytest.mark.parametrize("epochs, window", [(3000, 300), (100, 10), (15, 2), (5, 1), (1, 1)])
def test_the_plateau_window_is_the_last_tenth_of_the_epochs(epochs, window):
    history = np.arange(epochs, 0, -1, dtype=float) + 1.0  # history[k] = epochs + 1 - k
    drop, w = common.relative_drop(history, 1.0, 0.1)
    assert w == window
    assert drop == pytest.approx((window + 1 - 1.0) / (window + 1))


def test_dead_units_need_no_positive_weighted_sum_anywhere():
    z = np.array([[-1.0, 0.5, 0.0], [0.0, -2.0, 0.0], [-0.1, 3.0, 0.0]])
    assert tutorial_001.dead_units(z) == [0, 2]  # exactly 0 counts as dead: relu'(0) = 0


def test_an_exact_fit_through_one_hidden_unit_is_converged_with_that_unit_dead():
    # hidden 0: z = -x - 2 < 0 everywhere (dead); hidden 1: z = x + 2 > 0 everywhere;
    # outputs relu(h1 - 2) = relu(x) and relu(2 - h1) = relu(-x): an exact fit
    z_h, z_o, loss = forward([[-1.0], [1.0]], [-2.0, 2.0], [[0.0, 1.0], [0.0, -1.0]], [-2.0, 2.0])
    assert loss == pytest.approx(0.0, abs=1e-30)
    s = tutorial_001.classify_seed(*falling(0.3, loss + 1e-12), z_h, z_o, Y)
    assert s["outcome"] == "converged"
    assert s["dead_hidden_units"] == [0] and s["dead_output_units"] == [] and s["silent_output_units"] == []
    assert s["hidden_active_examples"] == [0, 64] and s["output_active_examples"] == [32, 32]
    assert "hidden 0 dead" in s["note"] and "hidden 1 alone feeds both outputs" in s["note"]


def test_a_dead_output_is_a_plateau_at_the_zero_output_loss():
    # as above, but output 0's weighted sum is -h1 - 0.5 < 0 everywhere: it predicts 0 for relu(x)
    z_h, z_o, loss = forward([[-1.0], [1.0]], [-2.0, 2.0], [[0.0, -1.0], [0.0, -1.0]], [-0.5, 2.0])
    assert loss == pytest.approx(ZERO_OUTPUT_LOSS, rel=1e-12)
    s = tutorial_001.classify_seed(np.full(100, loss), loss, z_h, z_o, Y)
    assert s["outcome"] == "plateaued"
    assert s["dead_output_units"] == [0] and s["silent_output_units"] == [0] and s["largest_output"][0] == 0.0
    assert f"1/2 mean(y0^2) = {ZERO_OUTPUT_LOSS:.6g}" in s["note"]


def test_a_silent_output_need_not_be_dead():
    # output 1 = relu(0.002 x): positive on the 32 inputs x > 0, never above 0.002
    z_h, z_o, loss = forward([[-1.0], [1.0]], [-2.0, 2.0], [[0.0, 1.0], [0.0, 0.002]], [-2.0, -0.004])
    s = tutorial_001.classify_seed(np.full(100, loss), loss, z_h, z_o, Y)
    assert s["dead_output_units"] == [] and s["silent_output_units"] == [1]
    assert s["output_active_examples"][1] == 32 and s["largest_output"][1] == pytest.approx(0.002)
    # y1 is missed on x < 0 and overshot by 0.002 x on x > 0, which mirrors it: 1/2 mean y1^2 (1 + 0.002^2)
    assert loss == pytest.approx(ZERO_OUTPUT_LOSS * (1 + 0.002**2), rel=1e-12)
    assert s["outcome"] == "plateaued" and "output 1 is ~0 on every input (largest 0.002, > 0 on 32 of 64)" in s["note"]


def test_the_headline_names_the_seeds_of_each_outcome():
    seeds = [{"seed": 0, "outcome": "plateaued", "final_loss": 0.086, "dead_hidden_units": [], "silent_output_units": [1]},
             {"seed": 1, "outcome": "converged", "final_loss": 1e-6, "dead_hidden_units": [0], "silent_output_units": []},
             {"seed": 2, "outcome": "converged", "final_loss": 2e-6, "dead_hidden_units": [], "silent_output_units": []}]
    assert tutorial_001.headline(seeds) == ("converged 2/3: seeds 1, 2 (a dead hidden unit in 1); plateaued 1/3: seeds 0 at "
                                            "0.086 (an output ~0 everywhere in 0); final loss 1e-06 to 0.086")


# --- without matplotlib --------------------------------------------------------------------------

def test_plots_note_names_the_experiment_only_when_matplotlib_is_missing(monkeypatch):
    assert common.plots_note("tutorial_001") is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert common.plots_note("tutorial_001") == ("tutorial_001: plots skipped: matplotlib is not installed "
                                                 "(pip install 'jaxbp[plots]'); the JSON and CSV files are written")

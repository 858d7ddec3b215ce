"""How tutorial_001 classifies a seed and how sweep_000 reads its learning rates, on hand-made numbers
whose answer is known in closed form (plain numpy, nothing trained)."""

import math
import sys

import numpy as np
import pytest

from jaxbp.experiments import common, sweep_000, tutorial_001
from jaxbp.train.run import LOCK_NAME

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


# --- sweep_000 -----------------------------------------------------------------------------------

def test_the_floor_is_two_outputs_ten_ulps_of_095_off():
    # targets 0.05 and 0.95: an ulp of 0.95 is 2^-53, and the floor is 2 outputs x 1/2 (10 x 2^-53)^2
    assert sweep_000.FLOOR == 100 * 2.0**-106
    assert sweep_000.QUANTUM == 2.0**-107
    assert sweep_000.SATURATED == pytest.approx(0.5 * 0.05**2, rel=1e-15)


def curves(finals, epochs=100):
    """(history, final) for runs that end at ``finals``: falling geometrically from 0.3, or flat at the end."""
    finals = np.asarray(finals, float)
    history = np.empty(finals.shape + (epochs,))
    for idx, f in np.ndenumerate(finals):
        if not np.isfinite(f):
            history[idx] = np.r_[np.full(epochs - 1, 0.3), f]
        elif f >= 1e-3:  # stuck: at the final value for the whole run
            history[idx] = f
        else:
            history[idx] = np.geomspace(0.3, max(f, 1e-300), epochs + 1)[:-1]
    return history, finals


def test_run_status():
    history, final = curves([[1e-32, 2.5e-3, 1e-10, math.nan]])
    final[0, 2] = 1e-10
    status = sweep_000.run_status(history, final)
    assert status.tolist() == [["floor", "stuck", "still falling", "diverged"]]
    assert sweep_000.run_status(history, final, floor=1e-9).tolist() == [["floor", "stuck", "floor", "diverged"]]


GRID_LRS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
GRID = [[1e-4, 1e-5, 1e-6],              # still falling everywhere
        [1e-32, 2e-32, 1e-20],           # median at the floor, one seed not
        [1e-32, 3e-32, 6e-33],           # every seed
        [6e-33, 6e-33, 1e-31],           # every seed
        [1e-32, 1e-32, 2.5e-3],          # median at the floor; one run stuck: the breakdown
        [1.25e-3, 2.5e-3, math.nan]]     # median off the floor; one diverged


def test_read_sweep_finds_the_range_and_the_breakdown():
    history, final = curves(GRID)
    r = sweep_000.read_sweep(GRID_LRS, history, final)
    assert r["floor_learning_rates"] == [2.0, 4.0, 8.0, 16.0]
    assert r["floor_range"] == [2.0, 16.0] and r["every_seed_floor_range"] == [4.0, 8.0]
    assert r["breakdown"]["learning_rate"] == 16.0 and r["breakdown"]["floor"] == 2 and r["breakdown"]["stuck"] == 1
    assert r["breakdown"]["runs_off_the_floor"] == [{"seed": 2, "status": "stuck", "final_loss": 2.5e-3,
                                                     "epochs_at_saturated_loss": 99}]
    assert r["first_stuck_or_diverged"]["learning_rate"] == 16.0
    leaves = r["median_leaves_floor_at"]
    assert leaves["learning_rate"] == 32.0 and (leaves["stuck"], leaves["diverged"]) == (2, 1)
    # the diverged run counts as infinite (dropping it, as nanmedian would, gives the mean of the other two)
    assert r["median_final_loss"][-1] == 2.5e-3
    assert r["counts"]["still falling"].tolist() == [3, 1, 0, 0, 0, 0]
    text = sweep_000.headline(r, 100)
    assert text.startswith("median E at the float64 floor (<= 1.2e-30) for lr 2 to 16 (every seed: lr 4 to 8); "
                           "breaks down at lr 16 (1 of 3 runs off the floor)")
    assert "median off the floor from lr 32" in text and text.endswith("; 1 diverged")


def test_read_sweep_reports_the_longest_range_and_the_lrs_outside_it():
    history, final = curves([[1e-32], [1e-3], [1e-32], [1e-32], [1e-3]])
    r = sweep_000.read_sweep([1.0, 2.0, 3.0, 4.0, 5.0], history, final)
    assert r["floor_range"] == [3.0, 4.0] and r["floor_learning_rates"] == [1.0, 3.0, 4.0]
    assert r["breakdown"]["learning_rate"] == 5.0
    assert "also at the floor, outside that range: lr 1" in sweep_000.report(r)


def test_read_sweep_without_a_floor_or_a_breakdown():
    history, final = curves([[1e-5, 1e-6]])
    r = sweep_000.read_sweep([1.0], history, final)
    assert r["floor_range"] is None and r["breakdown"] is None
    assert sweep_000.headline(r, 100).startswith("no learning rate reaches the float64 floor")
    history, final = curves([[1e-5], [1e-32]])
    r = sweep_000.read_sweep([1.0, 2.0], history, final)
    assert r["floor_range"] == [2.0, 2.0] and r["breakdown"] is None
    assert "no breakdown up to the largest lr" in sweep_000.headline(r, 100)


def test_epochs_at_saturated_loss():
    # after the first update: 2 x, 2 x, 1 x 0.00125 and a loss that is no multiple of it
    assert sweep_000.epochs_at_saturated_loss(np.array([0.3, 0.0025, 0.0025, 0.00125, 1e-5])) == 3
    assert sweep_000.epochs_at_saturated_loss(np.array([0.0025, 0.0019, 0.003])) == 0


# --- without matplotlib --------------------------------------------------------------------------

def test_plots_note_names_the_experiment_only_when_matplotlib_is_missing(monkeypatch):
    assert common.plots_note("tutorial_001") is None
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert common.plots_note("tutorial_001") == ("tutorial_001: plots skipped: matplotlib is not installed "
                                                 "(pip install 'jaxbp[plots]'); the JSON and CSV files are written")


def test_without_matplotlib_the_plots_are_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    # tutorial_001 takes the same two lines (common.plots_note, then print to stderr): one run is enough
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    summary = sweep_000.run(tmp_path, epochs=5, n_lr=2, n_seeds=1, progress=False)
    files = {p.name for p in tmp_path.iterdir()} - {LOCK_NAME}  # the run driver's lock stays
    assert files == {"summary.json", "final_loss.csv", "per_learning_rate.csv", "history.csv"}
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [common.plots_note("sweep_000")] and summary["plots"] == err[0]

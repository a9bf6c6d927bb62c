"""saelab/figures/animation.py and --animate: frames, GIF size, steady grey levels, same parameters, Ctrl-C."""

import argparse
import signal

import numpy as np
import pytest
from PIL import Image, ImageSequence

from saelab.figures import animation
from saelab import experiment
from saelab.figures import plots
import sparse_autoencoder as sae
from saelab.training import common
from saelab.training import autoencoder as train
import train_mnist
import train_patches


@pytest.fixture(autouse=True)
def no_hold(monkeypatch):
    """No held last frame (20 more renders) unless a test asks for one: keeps the tests fast."""
    monkeypatch.setattr(animation, "HOLD_SECONDS", 0.0)


def gif_frames(path):
    """The frames of a GIF as RGB arrays (height, width, 3), and their durations in ms."""
    with Image.open(path) as image:
        frames = [(np.asarray(frame.convert("RGB")), frame.info.get("duration"))
                  for frame in ImageSequence.Iterator(image)]
    return [f for f, _ in frames], [d for _, d in frames]


def data(m=60, n=16, seed=0):
    return np.random.default_rng(seed).random((m, n)) ** 2        # (m, 16): 4 x 4 tiles


def step(iteration, W1, cost=1.0, optimizer="lbfgs"):
    return common.TrainingStep(optimizer, iteration, None, cost, {"W1": W1}, 0.0)


# ---------------------------------------------------------------------------
# Which steps become frames
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("total, every, frames", [
    (400, 6, 68),            # the default L-BFGS run
    (790, 13, 62),           # 10 epochs of Adam on 10,000 examples, batches of 128
    (100, 1, 100),
    (7, 1, 7),
])
def test_a_default_run_gives_40_to_80_frames(total, every, frames):
    assert animation.frame_interval(total) == every
    assert len(animation.frame_steps(total, every)) == frames
    for total_steps in (60, 120, 400, 790, 1000, 4000, 100_000):
        assert 40 <= len(animation.frame_steps(total_steps, animation.frame_interval(total_steps))) <= 80


def test_total_steps_counts_iterations_or_adam_steps():
    assert animation.total_steps(train.SparseAutoencoder(4, max_iter=123), 1000) == 123
    adam = train.SparseAutoencoder(4, optimizer="adam", epochs=3, batch_size=128)
    assert animation.total_steps(adam, 1000) == 3 * 8


def test_the_recorder_keeps_steps_1_every_n_and_the_last_one_reached():
    X = data()
    recorder = animation.FilterRecorder(every=4)
    model = train.SparseAutoencoder(4, rho=0.1, lam=1e-3, max_iter=10).fit(
        X, callback=recorder, progress=False)
    last = model.history_["iteration"][-1]
    assert last == 10
    assert [recorder.steps[i] for i, _ in recorder.frames()] == animation.frame_steps(10, 4) == [1, 4, 8, 10]
    assert len(recorder) == 4 and recorder.costs == model.history_["cost"][1:]
    np.testing.assert_array_equal(recorder.frames()[-1][1], model.params_["W1"].astype(np.float32))


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimizers_never_modify_the_params_they_hand_to_the_callback(optimizer):
    kept = []
    model = train.SparseAutoencoder(4, rho=0.1, lam=1e-3, max_iter=8, optimizer=optimizer, epochs=2,
                                    batch_size=16, lr=1e-2)
    model.fit(data(), callback=lambda s: kept.append((s.params, {k: v.copy() for k, v in s.params.items()})),
              progress=False)
    assert len(kept) >= 8
    for reference, copy in kept:                  # the recorder may keep a reference to the last W1
        for name in sae.PARAM_NAMES:
            np.testing.assert_array_equal(reference[name], copy[name])


def test_chain_callbacks_calls_all_and_stops_if_any_says_so():
    seen = []
    chained = animation.chain_callbacks(lambda s: seen.append(("a", s)), None,
                                        lambda s: seen.append(("b", s)) or s == 2)
    assert [chained(1), chained(2)] == [False, True]
    assert seen == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "3"])
def test_a_bad_every_is_refused(every):
    with pytest.raises(ValueError, match="every"):
        animation.FilterRecorder(every)


# ---------------------------------------------------------------------------
# The GIF
# ---------------------------------------------------------------------------


def test_the_gif_has_one_frame_per_recorded_step_the_expected_size_and_changes(tmp_path):
    recorder = animation.FilterRecorder(every=5)
    model = train.SparseAutoencoder(9, rho=0.1, lam=1e-3, max_iter=23).fit(
        data(), callback=recorder, progress=False)
    path = recorder.save_gif(tmp_path / "t.gif", (4, 4), hold_seconds=0.5)
    frames, durations = gif_frames(path)
    assert len(frames) == len(recorder) == len(animation.frame_steps(model.history_["iteration"][-1], 5)) == 6
    _, (width, height) = animation.layout(plots.filter_grid(model.params_["W1"], (4, 4)).shape)
    assert all(frame.shape == (height, width, 3) for frame in frames)
    assert not np.array_equal(frames[0], frames[-1])
    assert durations[0] == 1000 // animation.FPS
    assert durations[-1] == 1000 // animation.FPS + 500             # the last frame, held 0.5 s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.gif"]                    # no temporary left


def test_adam_frames_are_steps_and_titles_say_so(tmp_path):
    recorder = animation.FilterRecorder(every=3)
    train.SparseAutoencoder(4, rho=0.1, lam=1e-3, optimizer="adam", epochs=2, batch_size=20, lr=1e-2).fit(
        data(), callback=recorder, progress=False)
    assert [recorder.steps[i] for i, _ in recorder.frames()] == [1, 3, 6]
    assert recorder.title(len(recorder.steps) - 1).startswith("Adam step 6 (epoch 2): mini-batch J = ")
    frames, _ = gif_frames(recorder.save_gif(tmp_path / "adam.gif", (4, 4)))
    assert len(frames) == 3


def test_nothing_recorded_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no step was recorded"):
        animation.FilterRecorder(2).save_gif(tmp_path / "t.gif", (4, 4))
    assert list(tmp_path.iterdir()) == []


def growing_frames():
    """Filters of 6 frames: tile 0 never changes, the others grow and drift (the mean moves)."""
    rng = np.random.default_rng(5)
    constant = rng.standard_normal(16)
    frames = []
    for t in range(6):
        W1 = rng.standard_normal((6, 16)) * (1 + t) - 0.5 * t
        W1[0] = constant
        frames.append(W1)
    return frames


def tile_box(tile, grid_shape, tile_shape, n_cols):
    """Pixel rows and columns of a tile's inside in a GIF frame (one pixel in from its edges)."""
    factor, (_, height) = animation.layout(grid_shape)
    grid_h = grid_shape[0] * factor
    top = animation.TOP + (max(grid_h, 200) - grid_h) / 2
    h, w = tile_shape
    r, c = divmod(tile, n_cols)
    y0, x0 = int(top) + (1 + r * (h + 1)) * factor, animation.MARGIN + (1 + c * (w + 1)) * factor
    return slice(y0 + 1, y0 + h * factor - 1), slice(x0 + 1, x0 + w * factor - 1)


def test_a_tile_that_does_not_change_keeps_its_pixels_in_every_frame(tmp_path):
    frames = growing_frames()
    center, scales = animation.steady_scaling(frames)
    grids = [animation.frame_grid(W1, center, scales, (4, 4)) for W1 in frames]
    tile0 = [g[1:5, 1:5] for g in grids]
    assert all(np.array_equal(tile0[0], t) for t in tile0)        # steady, whatever the others do
    assert max(np.abs(g).max() for g in grids) == pytest.approx(1.0)   # nothing saturates
    per_frame = [plots.filter_grid(W1, (4, 4))[1:5, 1:5] for W1 in frames]
    assert not np.allclose(per_frame[0], per_frame[-1])          # per-frame scaling would flicker

    recorder = animation.FilterRecorder(every=1)
    for t, W1 in enumerate(frames, start=1):
        recorder(step(t, W1, cost=10.0 / t))
    pictures, _ = gif_frames(recorder.save_gif(tmp_path / "steady.gif", (4, 4)))
    assert len(pictures) == 6
    rows0, cols0 = tile_box(0, grids[0].shape, (4, 4), 3)
    rows1, cols1 = tile_box(1, grids[0].shape, (4, 4), 3)
    assert pictures[0][rows0, cols0].std() > 0                   # the box is inside a tile
    for picture in pictures[1:]:
        np.testing.assert_array_equal(picture[rows0, cols0], pictures[0][rows0, cols0])
    assert not np.array_equal(pictures[0][rows1, cols1], pictures[-1][rows1, cols1])


def test_steady_scaling_is_the_per_tile_maximum_over_all_frames():
    frames = growing_frames()
    center, scales = animation.steady_scaling(np.stack(frames))
    assert center == pytest.approx(np.mean(frames))
    np.testing.assert_allclose(scales, np.abs(np.stack(frames) - center).max(axis=(0, 2)))
    zero = animation.steady_scaling([np.zeros((2, 4))])
    assert zero == (0.0, pytest.approx([1.0, 1.0]))


# ---------------------------------------------------------------------------
# The scripts
# ---------------------------------------------------------------------------


def _args(out_dir, *extra):
    parser = argparse.ArgumentParser()
    experiment.add_training_arguments(parser, hidden=4, rho=0.1, lam=1e-3, iters=40)
    return parser.parse_args(["--out-dir", str(out_dir), "--quiet", *extra])


def _run(out_dir, *extra, callback=None):
    return experiment.run(_args(out_dir, *extra), data(), name="t", tile_shape=(4, 4),
                          callback=callback, stream=None)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_animate_gives_bit_identical_parameters(optimizer, tmp_path, capsys):
    options = ["--optimizer", optimizer, "--iters", "25", "--epochs", "2", "--batch-size", "16"]
    plain, _, plain_paths = _run(tmp_path / "plain", *options)
    animated, summary, paths = _run(tmp_path / "animated", *options, "--animate-every", "5")
    for name in sae.PARAM_NAMES:
        assert animated.params_[name].tobytes() == plain.params_[name].tobytes()
    assert animated.history_["cost"] == plain.history_["cost"]
    assert "animation" not in plain_paths and paths["animation"] == tmp_path / "animated" / "t_training.gif"
    steps = animated.history_["iteration"][-1] if optimizer == "lbfgs" else len(animated.history_["step_cost"])
    frames, _ = gif_frames(paths["animation"])
    assert len(frames) == len(animation.frame_steps(steps, 5))
    assert "s drawing the animation" in capsys.readouterr().out
    assert summary["animation_seconds"] > 0


def test_animate_uses_frame_interval_by_default(tmp_path):
    model, _, paths = _run(tmp_path, "--iters", "8", "--animate")      # 8 // 60 -> every step
    assert len(gif_frames(paths["animation"])[0]) == model.history_["iteration"][-1] == 8


def test_train_patches_animates_zca_filters_on_pixels(tmp_path):
    out = tmp_path / "out"
    status = train_patches.main(["--zca", "--patches", "300", "--test-patches", "0", "--iters", "6",
                                 "--animate-every", "2", "--quiet", "--out-dir", str(out)])
    assert status == 0
    frames, _ = gif_frames(out / "patches_zca_training.gif")
    assert len(frames) == 4                                       # iterations 1, 2, 4, 6


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "often"])
@pytest.mark.parametrize("script", ["train_patches", "train_mnist"])
def test_a_bad_animate_every_is_an_argparse_error(script, value, capsys):
    with pytest.raises(SystemExit) as info:
        if script == "train_patches":
            train_patches.parse_args(["--animate-every", value])
        else:
            train_mnist.main(["--animate-every", value])
    assert info.value.code == 2
    assert "--animate-every" in capsys.readouterr().err.strip().splitlines()[-1]


def test_animate_every_implies_animate():
    assert not experiment.animates(train_patches.parse_args([]))
    assert experiment.animates(train_patches.parse_args(["--animate"]))
    assert experiment.animates(train_patches.parse_args(["--animate-every", "3"]))


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------


def _send_sigint():
    """SIGINT to this process, only while run's handler is installed (else pytest would stop)."""
    handler = signal.getsignal(signal.SIGINT)
    assert isinstance(getattr(handler, "__self__", None), common.StopOnInterrupt), handler
    signal.raise_signal(signal.SIGINT)


def test_ctrl_c_writes_the_gif_of_the_frames_so_far(tmp_path, capsys):
    def callback(step):
        if step.iteration == 5:
            _send_sigint()

    model, summary, paths = _run(tmp_path, "--animate-every", "2", callback=callback)
    assert summary["interrupted"] and experiment.exit_status(summary) == 130
    assert model.history_["iteration"][-1] == 5
    frames, _ = gif_frames(paths["animation"])
    assert len(frames) == 4                                       # iterations 1, 2, 4 and 5
    assert "t_training.gif" in capsys.readouterr().out


def test_a_second_ctrl_c_while_drawing_leaves_no_gif(tmp_path, monkeypatch, capsys):
    from matplotlib.animation import PillowWriter

    real_grab = PillowWriter.grab_frame
    grabbed = []

    def grab_interrupted(self, **kwargs):
        grabbed.append(1)
        if len(grabbed) == 2:
            _send_sigint()                                        # the second Ctrl-C, mid-drawing
        return real_grab(self, **kwargs)

    def callback(step):
        if step.iteration == 3:
            _send_sigint()                                        # the first, during training
            monkeypatch.setattr(PillowWriter, "grab_frame", grab_interrupted)

    with pytest.raises(SystemExit) as info:
        _run(tmp_path, "--animate-every", "1", callback=callback)
    assert info.value.code == 130
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "t_training.gif" not in names and not any(n.endswith(".tmp") for n in names)
    assert "t_model.npz" in names                                 # saved before the drawing
    assert "Ctrl-C again while saving" in capsys.readouterr().err


# Issue 20: the animation's options are refused by name before anything is drawn.
def _recorder_with_three_steps():
    from saelab.training.common import TrainingStep

    recorder = animation.FilterRecorder(every=1)
    params = sae.init_params(4, 3, rng=0)
    for i in range(1, 4):
        recorder(TrainingStep("lbfgs", i, 0, 1.0 / i, params, 0.1))
    return recorder


@pytest.mark.parametrize("options, error, match", [
    ({"fps": 0}, ValueError, "fps: expected a number > 0"),
    ({"fps": -1}, ValueError, "fps: expected a number > 0"),
    ({"fps": float("nan")}, TypeError, "fps: expected a finite"),
    ({"hold_seconds": float("nan")}, TypeError, "hold_seconds: expected a finite"),
    ({"hold_seconds": -1.0}, ValueError, "hold_seconds: expected a number >= 0"),
    ({"transform": 3}, TypeError, "transform: expected None or a function"),
    ({"transform": lambda W: W * np.nan}, ValueError, "transform: returned NaN"),
    ({"transform": lambda W: W[:, :3]}, ValueError, "tile_shape: .* has 4 pixels, but a frame has 3"),
    ({"path": ""}, ValueError, "path: expected a file path"),
    ({"path": None}, TypeError, "path: expected a file path"),
    ({"tile_shape": (2.0, 2.0)}, TypeError, "tile_shape: expected .*two integers"),
    ({"tile_shape": (-2, -2)}, ValueError, "tile_shape: expected a height and a width >= 1"),
    ({"tile_shape": (1, 2, 2)}, TypeError, "tile_shape: expected"),
])
def test_bad_animation_options_are_refused_by_name_and_nothing_is_written(tmp_path, monkeypatch,
                                                                          options, error, match):
    monkeypatch.chdir(tmp_path)
    recorder = _recorder_with_three_steps()
    arguments = {"path": "a.gif", "tile_shape": (2, 2), **options}
    with pytest.raises(error, match=match):
        recorder.save_gif(arguments.pop("path"), arguments.pop("tile_shape"), **arguments)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_not_a_gif_path_and_a_missing_parent_is_created(tmp_path):
    recorder = _recorder_with_three_steps()
    with pytest.raises(ValueError, match="is a folder"):
        recorder.save_gif(tmp_path, (2, 2))
    written = recorder.save_gif(tmp_path / "new" / "a.gif", (2, 2))
    assert written.exists() and written.stat().st_size > 0

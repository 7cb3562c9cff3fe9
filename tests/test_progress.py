"""ganseg.progress: log lines on a fake clock, the tqdm bar on a terminal, silence when disabled."""

from __future__ import annotations

import io

import pytest
import torch
from tqdm import tqdm

from ganseg.gan.consistency import train_reference_segmenter
from ganseg.gan.dcgan import DcganGenerator, DcganGeneratorConfig
from ganseg.gan.synthesis import dcgan_pairs
from ganseg.metrics.inception import extract_features
from ganseg.progress import Progress, format_duration, progress_iter


class FakeClock:
    """Time stands still unless a test moves it (or ``tick`` moves it on every reading)."""

    def __init__(self, tick: float = 0.0) -> None:
        self.now, self.tick = 100.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_log_mode_prints_percent_rate_eta_at_the_interval_and_a_final_line():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(1000, "train", every_s=30, stream=stream, clock=clock)
    clock.now += 10
    progress.update(100)
    assert lines(stream) == []  # 10 s < every_s: nothing yet
    clock.now += 20  # 30 s in, 370 steps: 12.33 steps/s, 630 left -> 51 s
    progress.update(270, loss=0.123456)
    assert lines(stream)[-1] == "train: 37% (370/1000 steps), 12.3 steps/s, eta 0:51, loss=0.1235"
    clock.now += 5
    progress.update(10)
    assert len(lines(stream)) == 1  # the next line waits another every_s
    clock.now += 46  # 81 s in total
    progress.update(620)
    progress.close()
    progress.close()  # idempotent: one final line
    assert lines(stream)[-2:] == [
        "train: 100% (1000/1000 steps), 12.3 steps/s, eta 0:00, loss=0.1235",
        "train: 100% (1000/1000 steps), 12.3 steps/s, done in 1:21, loss=0.1235",
    ]


def test_the_final_line_comes_at_the_end_even_before_the_first_interval():
    clock, stream = FakeClock(), io.StringIO()
    with Progress(8, "features", unit="image", stream=stream, clock=clock) as progress:
        clock.now += 2
        progress.update(8)
    assert lines(stream) == ["features: 100% (8/8 images), 4.0 images/s, done in 0:02"]


def test_a_step_that_showed_progress_and_then_failed_says_where_it_stopped():
    clock, stream = FakeClock(), io.StringIO()
    with (pytest.raises(RuntimeError),
          Progress(10, "synthesis", unit="pair", every_s=3, stream=stream, clock=clock) as progress):
        clock.now += 4
        progress.update(2)
        raise RuntimeError("generator failed")
    assert lines(stream) == [
        "synthesis: 20% (2/10 pairs), 2.0 s/pair, eta 0:16",
        "synthesis: 20% (2/10 pairs), 2.0 s/pair, stopped after 0:04",
    ]


def test_a_step_that_failed_before_its_first_line_stays_silent():
    # The user's error must remain the one line on stderr (CONTRIBUTING: errors).
    clock, stream = FakeClock(), io.StringIO()
    with pytest.raises(ValueError), Progress(10, "predict", stream=stream, clock=clock) as progress:
        clock.now += 1
        progress.update(1)
        raise ValueError("bad output folder")
    assert stream.getvalue() == ""
    progress.close()  # already finished: nothing more
    assert stream.getvalue() == ""


def test_a_resumed_run_rates_only_the_steps_done_in_this_process():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(1000, "train", initial=900, every_s=10, stream=stream, clock=clock)
    clock.now += 10
    progress.update(20)  # 20 new steps in 10 s = 2/s (not 920/10), 80 left -> 40 s
    assert lines(stream) == ["train: 92% (920/1000 steps), 2.0 steps/s, eta 0:40"]


def test_no_step_yet_gives_an_unknown_rate_not_a_division_by_zero():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(5, "consistency U-Net", every_s=1, stream=stream, clock=clock)
    clock.now += 3
    progress.update(0, loss=0.5)
    assert lines(stream)[-1] == "consistency U-Net: 0% (0/5 steps), ? steps/s, eta ?, loss=0.5"


def test_disabled_prints_nothing():
    stream, terminal = io.StringIO(), Terminal()
    for target in (stream, terminal):
        with Progress(10, "quiet", enabled=False, stream=target, every_s=1e-9) as progress:
            progress.update(5, loss=1.0)
            progress.write("not shown either")
        assert progress.bar is None
        assert target.getvalue() == ""


def test_write_in_log_mode_is_a_plain_line():
    stream = io.StringIO()
    with Progress(2, "predict", stream=stream, clock=FakeClock()) as progress:
        progress.write("warning: tile larger than image")
    assert lines(stream)[0] == "warning: tile larger than image"


def test_terminal_mode_draws_a_tqdm_bar_with_rate_and_postfix():
    terminal = Terminal()
    progress = Progress(50, "gan", unit="step", initial=10, stream=terminal)
    assert progress.mode == "bar" and isinstance(progress.bar, tqdm)
    assert progress.bar.n == 10 and progress.bar.total == 50
    progress.update(5, d_loss=0.25)
    assert progress.bar.n == 15
    progress.write("a message")
    progress.close()
    output = terminal.getvalue()
    assert "gan:" in output and "15/50" in output and "d_loss=0.25" in output and "step/s" in output
    assert "a message\n" in output
    assert "eta" not in output  # the log line format is not used on a terminal


def test_progress_iter_yields_everything_and_counts_each_item():
    clock, stream = FakeClock(), io.StringIO()
    items = list(progress_iter(iter("abcde"), 5, "letters", unit="letter", stream=stream, clock=clock))
    assert items == list("abcde")
    assert lines(stream) == ["letters: 100% (5/5 letters), ? letters/s, done in 0:00"]  # no time passed


def test_progress_iter_closes_when_the_loop_breaks():
    stream = io.StringIO()  # one second per clock reading, a line every 2 s: lines are on show
    iterator = progress_iter(range(10), 10, "early", every_s=2, stream=stream, clock=FakeClock(tick=1))
    for item in iterator:
        if item == 3:
            break
    iterator.close()
    assert lines(stream)[-1] == "early: 30% (3/10 steps), 1.3 s/step, stopped after 0:04"  # 4 s, 3 steps


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "0:00"), (51, "0:51"), (725, "12:05"), (3723, "1:02:03")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# --------------------------------------------------------------------------------------------
# The long steps that use it (pytest's captured stderr is no terminal: log lines)


class MeanFeatures(torch.nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(2, 3))  # (N, C)


def test_extract_features_shows_progress_over_images_only_when_labelled(capsys):
    images = torch.zeros(5, 1, 8, 8, dtype=torch.uint8)
    extract_features(images, MeanFeatures(), batch_size=2)
    assert capsys.readouterr().err == ""
    features = extract_features(images, MeanFeatures(), batch_size=2, label="FID features: real")
    assert features.shape == (5, 1)
    assert capsys.readouterr().err.startswith("FID features: real: 100% (5/5 images), ")


def test_synthesis_counts_pairs_and_can_be_silenced(capsys):
    generator = DcganGenerator(DcganGeneratorConfig(latent_dim=8, out_channels=2, image_size=32, base_channels=8))
    pairs = list(dcgan_pairs(generator, 5, 8, 1, 1, seed=1, device=torch.device("cpu"), batch_size=2))
    assert len(pairs) == 5
    assert capsys.readouterr().err.startswith("synthesis (dcgan): 100% (5/5 pairs), ")
    list(dcgan_pairs(generator, 2, 8, 1, 1, seed=1, device=torch.device("cpu"), label=None))
    assert capsys.readouterr().err == ""


def test_reference_segmenter_shows_its_steps_and_loss(capsys):
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    labels = (images[:, 0] > 128).to(torch.uint8)
    train_reference_segmenter(images, labels, 1, steps=3, base_width=4, batch_size=2, lr=1e-3, seed=0,
                              device=torch.device("cpu"), patch_size=16)
    line = capsys.readouterr().err.strip()
    assert line.startswith("consistency U-Net: 100% (3/3 steps), ") and ", loss=" in line

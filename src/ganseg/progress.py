"""One progress display for every long step: a bar on a terminal, periodic lines in logs.

On a terminal (``stream.isatty()``) a tqdm bar shows count, rate and ETA. Anywhere else (a log
file, CI, ``dvc repro`` piped to a file) a bar would be one endless line of carriage returns,
so :class:`Progress` writes a plain line instead, every ``every_s`` seconds and at the end::

    synthesis (pix2pix): 37% (370/1000 pairs), 12.3 pairs/s, eta 0:51
    synthesis (pix2pix): 100% (1000/1000 pairs), 12.4 pairs/s, done in 1:21

Rate and ETA count only the steps done in this process (after ``initial``), so a resumed run
does not claim the speed of the steps it skipped. A step left by an exception before its first
line stays silent, so a user error is still the one line on stderr (CONTRIBUTING: errors); one
that had shown lines ends with ``..., stopped after 0:30``.
"""

from __future__ import annotations

import numbers
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Self, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """Progress of one long step: a tqdm bar with rate and ETA on a terminal; elsewhere (logs,
    CI, `dvc repro` piped to a file) one line `<label>: 37% (370/1000 steps), 12.3 steps/s, eta 0:51`
    every `every_s` seconds and at the end.

    ``enabled``: None or True = a bar when ``stream`` (default ``sys.stderr``) is a terminal,
    else periodic lines; False = silent (no bar, no lines, :meth:`write` prints nothing), e.g.
    on the non-main processes of a distributed run. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        unit: str = "step",
        initial: int = 0,
        enabled: bool | None = None,
        every_s: float = 30.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be > 0, got {every_s}")
        self.total, self.label, self.unit, self.initial = int(total), label, unit, int(initial)
        self.n = self.initial
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._postfix: dict[str, str] = {}
        self._closed = False
        self._lines_shown = 0
        self.mode = "off" if enabled is False else ("bar" if _is_terminal(self.stream) else "log")
        self.bar: tqdm | None = None
        if self.mode == "bar":
            self.bar = tqdm(total=self.total, initial=self.initial, desc=label, unit=unit, file=self.stream,
                            dynamic_ncols=True)
        self._started = self._last_line = clock()

    def update(self, n: int = 1, **postfix: float | str) -> None:
        """Count ``n`` more steps; ``postfix`` (short name -> value) is shown until replaced."""
        self.n += n
        if postfix:
            self._postfix.update({name: _format_value(value) for name, value in postfix.items()})
        if self.mode == "bar":
            if postfix:
                self.bar.set_postfix(self._postfix, refresh=False)
            self.bar.update(n)
        elif self.mode == "log":
            now = self._clock()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                self._show(self._line(now, final=False))

    def write(self, text: str) -> None:
        """Print a line without breaking the bar (``tqdm.write`` when a bar is shown)."""
        if self.mode == "bar":
            tqdm.write(text, file=self.stream)
        elif self.mode == "log":
            self._emit(text)

    def close(self) -> None:
        """Finish the display: closes the bar, or prints the final line in log mode. Idempotent."""
        self._finish(final_line=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        # Left by an exception (GeneratorExit too: progress_iter's loop ended early): a final
        # line only if progress was already on show, else the error's own line stands alone.
        self._finish(final_line=exc_type is None or self._lines_shown > 0)

    def _finish(self, final_line: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self.bar.close()
        elif self.mode == "log" and final_line:
            self._show(self._line(self._clock(), final=True))

    def _line(self, now: float, final: bool) -> str:
        elapsed = now - self._started
        done_here = self.n - self.initial  # steps of this process: the only honest rate
        rate = done_here / elapsed if elapsed > 0 and done_here > 0 else None
        percent = f"{100 * self.n // self.total}%" if self.total > 0 else "100%"  # floor: 100% = done
        parts = [f"{self.label}: {percent} ({self.n}/{self.total} {_plural(self.unit)})", _format_rate(rate, self.unit)]
        if final:
            parts.append(f"{'done in' if self.n >= self.total else 'stopped after'} {format_duration(elapsed)}")
        else:
            remaining = max(self.total - self.n, 0)
            parts.append(f"eta {format_duration(remaining / rate) if rate else '?'}")
        parts.extend(f"{name}={value}" for name, value in self._postfix.items())
        return ", ".join(parts)

    def _show(self, line: str) -> None:
        self._lines_shown += 1
        self._emit(line)

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()  # piped stderr/stdout may be block-buffered: a log shows it now


def progress_iter(iterable: Iterable[T], total: int, label: str, **kwargs) -> Iterator[T]:
    """Yield the items of ``iterable``, counting one step each once the caller has handled it.

    ``kwargs`` go to :class:`Progress`. The display closes when the iterable is exhausted or
    the loop is left early (break, exception: as :meth:`Progress.__exit__` with an exception).
    """
    with Progress(total, label, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update(1)


def format_duration(seconds: float) -> str:
    """51 -> '0:51', 725 -> '12:05', 3723 -> '1:02:03' (rounded to whole seconds)."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _format_rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return f"? {_plural(unit)}/s"
    if rate >= 1:
        return f"{rate:.1f} {_plural(unit)}/s"
    return f"{1 / rate:.1f} s/{unit}"  # slow steps read better as seconds per step


def _format_value(value: float | str) -> str:
    if isinstance(value, (str, numbers.Integral)):
        return str(value)
    return f"{float(value):.4g}"  # floats, numpy scalars, 0-d tensors


def _plural(unit: str) -> str:
    return f"{unit}es" if unit.endswith(("s", "x", "ch", "sh")) else f"{unit}s"


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed or detached stream is no terminal
        return False

"""``LoopSource``: a file source played again from the start each time it ends (``camera.loop``)."""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from .base import Source
from .frame import Frame

log = logging.getLogger(__name__)


class LoopSource(Source):
    """A file source (video, image folder, image) played again from the start each time it ends
    (``camera.loop``, ``djsmile run --loop``): frame index and stream time keep rising, so hold,
    cooldown and real-time pacing go on as in one long clip. ``reopen()`` gives a fresh copy of the
    source for each pass; a pass that yields no frame ends the loop."""

    finite = True        # a file: paced by its own time stamps, never wrapped in a capture thread

    def __init__(self, first: Source, reopen: Callable[[], Source]):
        self._current = first
        self._reopen = reopen
        self._closed = False
        self.fps = first.fps
        self.still_images = first.still_images
        self.closes_during_read = first.closes_during_read   # its close() closes the pass under way
        self.passes = 0
        self.name = f"{first.name}, looped"

    def __iter__(self) -> Iterator[Frame]:
        import dataclasses
        index, t_base = 0, 0.0
        while not self._closed:
            got, last_t = 0, 0.0
            for fr in self._current:
                if self._closed:
                    return
                last_t = fr.t
                yield dataclasses.replace(fr, index=index, t=t_base + fr.t)
                index += 1
                got += 1
            self.passes += 1
            if not got or self._closed:
                return
            t_base += last_t + 1.0 / (self.fps or 30.0)
            log.debug("%s: pass %d done, playing it again from the start", self.name, self.passes)
            self._current.close()
            self._current = self._reopen()

    def close(self) -> None:
        self._closed = True
        self._current.close()

"""``Source``: the base class every frame source derives from."""

from __future__ import annotations

from typing import Iterator

from .frame import Frame


class Source:
    """Base class: iterate for frames; ``close()`` (or ``with``) releases the device.

    What a source can do is declared here, as class attributes with the defaults below, which a
    subclass (or its ``__init__``, when it depends on what was opened) overrides; nothing probes
    for them.
    """

    name: str = "source"
    #: ends by itself (a video file, an image folder); else a camera or a live stream, read in real time
    finite: bool = False
    total_frames: int | None = None   # frames a finite source will give, when known (progress lines)
    fps: float | None = None          # its own frame rate, when known (a file's, or camera.fps for a folder)
    #: each frame is a still image of its own, a new scene (an image folder): nothing is tracked or paced
    still_images: bool = False
    #: its frames can keep their camera buffer until ``Frame.release()``; a reader that keeps frames
    #: while the next ones are read sets ``frames_hold_requests`` to ask for it (the Pi camera)
    holds_requests: bool = False
    frames_hold_requests: bool = False
    #: ``close()`` may be called while another thread is blocked in a read (it never waits for it,
    #: nor breaks it: OpenCV), so a reader need not wait for the read to end before closing
    closes_during_read: bool = False

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

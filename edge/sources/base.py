"""``Source``: the base class every frame source derives from."""

from __future__ import annotations

from typing import Iterator

from .frame import Frame


class Source:
    """Base class: iterate for frames; ``close()`` (or ``with``) releases the device."""

    name: str = "source"
    finite: bool = False
    total_frames: int | None = None   # frames a finite source will give, when known (progress lines)

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

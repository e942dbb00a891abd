"""``djsmile bench``: time the detector's loop, stage by stage, on this machine.

:mod:`.run` times the variants (each frame through the ``Pipeline``'s timing
hook); :mod:`.feeds` makes the frames (an image folder as a drifting stream, a
video, a camera, the ``--pace`` feeder); :mod:`.machine` describes the machine;
:mod:`.report` turns the timings into figures, the table and the plot;
:mod:`.study` is ``--detector-study``. The flags are
:mod:`djsmile.commands.bench`'s; what is measured and how to read it: the
README (``djsmile bench``) and docs/BENCHMARKS.md.
"""

from .run import DEFAULT_MODES, MODES, PACED_MODES, Options

__all__ = ["DEFAULT_MODES", "MODES", "PACED_MODES", "Options"]

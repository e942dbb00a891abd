"""The outputs' one protocol: the loop walks a list of sinks; one that fails does not cost the others a frame."""

from __future__ import annotations

import logging

import numpy as np

from djsmile import service
from djsmile.config import Config
from djsmile.service import LoopParts
from djsmile.sinks import Sink, Sinks
from djsmile.sources import Frame, Source
from helpers import FakeModel, FixedFinder


class Frames(Source):
    name = "frames"
    finite = True

    def __init__(self, n: int):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield Frame(np.full((48, 64), 230, np.uint8), i, i / 10.0)   # a bright face: FakeModel says 0.9


class Recording(Sink):
    name = "recording"

    def __init__(self):
        self.frames, self.events, self.jokes = [], [], []

    def frame(self, frame, result, stats):
        self.frames.append((frame.index, result.smiling, stats.frames))

    def event(self, event):
        self.events.append(event)

    def joke(self, text):
        self.jokes.append(text)


class Broken(Sink):
    name = "broken"

    def frame(self, frame, result, stats):
        raise RuntimeError("the network is down")

    def event(self, event):
        raise RuntimeError("the network is down")


def test_every_sink_gets_every_frame_even_beside_one_that_fails(caplog):
    good_before, good_after = Recording(), Recording()
    with caplog.at_level(logging.ERROR, logger="djsmile.sinks"):
        rc = service.run(Config(), Frames(40), LoopParts(model=FakeModel(), finder=FixedFinder(),
                                                          sinks=[good_before, Broken(), good_after]))
    assert rc == 0
    for rec in (good_before, good_after):
        assert [i for i, _, _ in rec.frames] == list(range(40))
        assert [n for _, _, n in rec.frames] == list(range(1, 41))   # the counters are the frame's own
        assert rec.frames[-1][1] is True                              # the trigger's smile, as it decided it
    failures = [r for r in caplog.records if "broken: frame() failed" in r.getMessage()]
    assert 1 <= len(failures) <= 3, len(failures)                     # 40 failures, a few lines
    assert all(r.exc_info for r in failures)                          # with what went wrong


def test_events_and_jokes_reach_each_sink_once():
    a, b = Recording(), Recording()
    sinks = Sinks([a, None, Broken(), b])
    assert len(sinks) == 3                   # an absent part (None) is no sink
    sinks.event({"frame": 7})
    sinks.joke("I only know 25 letters of the alphabet. I don't know y.")
    assert a.events == b.events == [{"frame": 7}]
    assert a.jokes == b.jokes == ["I only know 25 letters of the alphabet. I don't know y."]

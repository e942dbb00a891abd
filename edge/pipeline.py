"""One frame's work: faces -> model -> trigger, written once.

``djsmile run`` (:mod:`djsmile.service`), ``djsmile bench`` (through the
timing hook) and ``djsmile calibrate`` all drive :meth:`Pipeline.process`.
Sinks (LED, photo, live view, MQTT) stay with the caller: the pipeline only
decides.
"""

from __future__ import annotations

import time
from typing import Callable

from .trigger import TriggerResult

#: the stages the timing hook is called after, in order
STAGES = ("detect", "classify", "trigger")

#: ``hook(stage, perf_counter_now, faces)``: called after each of :data:`STAGES`
TimingHook = Callable[[str, float, int], None]


class Pipeline:
    """Faces (``finder``), smile model (``model``) and ``trigger`` for one frame at a time.

    A frame marked ``new_scene`` (the next image of a folder) resets the face
    finder and the trigger's faces first, and is shown to the trigger
    ``hold_frames`` times: a still image is a scene that holds.
    """

    def __init__(self, finder, model, trigger, timing: TimingHook | None = None):
        self.finder = finder
        self.model = model
        self.trigger = trigger
        self.timing = timing

    def process(self, frame) -> TriggerResult:
        hook = self.timing
        finder, trigger = self.finder, self.trigger
        if frame.new_scene:  # a new image: no face, smile or hold carries over from the last one
            finder.reset()
            trigger.new_scene()
        boxes = finder.find(frame.gray, frame.color)
        n = len(boxes)
        if hook is not None:
            hook("detect", time.perf_counter(), n)
        # an eye-aligned model (v3) crops on the detection's landmarks, carried with each tracked box
        probs = self.model.predict(frame.gray, boxes, finder.landmarks) if boxes else []
        if hook is not None:
            hook("classify", time.perf_counter(), n)
        for _ in range(trigger.hold_frames if frame.new_scene else 1):
            result = trigger.update(frame.index, frame.t, boxes, probs)
        if hook is not None:
            hook("trigger", time.perf_counter(), n)
        return result

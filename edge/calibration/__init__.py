"""Calibration: the trigger's thresholds learnt from the person in front of the camera.

- :mod:`.thresholds`: the logic (per-phase p_smile samples in stream time, stats, thresholds, refusal);
- :mod:`.file`: ``calibration.json`` (written whole, read back checked) and which thresholds ``djsmile run`` uses;
- :mod:`.session`: one guided calibration fed frame by frame (prompts printed, spoken, LED), and the
  in-loop one ``djsmile run`` starts from the button or the live view;
- :mod:`.run`: the ``djsmile calibrate`` loop (its command line is :mod:`djsmile.commands.calibrate`).
"""

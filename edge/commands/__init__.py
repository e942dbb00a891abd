"""The subcommands, one thin module each (layer *commands*: below the CLI, above the app).

Each module offers ``add_arguments(parser)``, ``main(args, cfg) -> int`` and, if
its flags change config keys, ``apply_overrides(cfg, args)``; its ``main`` turns
the parsed flags into plain arguments for the module that does the job
(:mod:`djsmile.service`, :mod:`djsmile.bench`, :mod:`djsmile.calibration.run`, ...).
``train``, ``eval`` and ``convert`` keep their command in
:mod:`djsmile.training.train`, :mod:`djsmile.training.evaluate` and
:mod:`djsmile.convert.tflite`.
"""

"""The project's exception types, in one place (like gpiozero's ``exc.py``).

Errors a user can fix carry a one-line message naming the thing and the fix,
and an exit code that the CLI (and systemd) understands.
"""

# Exit codes (sysexits.h where one fits).
EX_OK = 0
EX_USAGE = 64       # bad command line
EX_DATAERR = 65     # bad input data (e.g. an empty class folder)
EX_NOINPUT = 66     # an input file is missing or unreadable (model, image)
EX_UNAVAILABLE = 69  # a needed service/device is unavailable (camera, GPIO)
EX_SOFTWARE = 70    # internal error
EX_TEMPFAIL = 75    # temporary failure: try again later (e.g. the state folder is in use)
EX_CONFIG = 78      # bad configuration (systemd: RestartPreventExitStatus=78)


class DjsmileError(Exception):
    """Base class of every error djsmile raises on purpose."""

    exit_code = EX_SOFTWARE


class ConfigError(DjsmileError):
    """A config file, key or value is wrong. Exit code 78 (EX_CONFIG)."""

    exit_code = EX_CONFIG


class ModelError(DjsmileError):
    """A model file is missing, corrupt, or not a TFLite model."""

    exit_code = EX_NOINPUT


class RuntimeMissingError(DjsmileError):
    """No TFLite interpreter (ai_edge_litert, tflite_runtime, tensorflow) is installed."""

    exit_code = EX_UNAVAILABLE


class SourceError(DjsmileError):
    """A frame source (camera, video file, image folder) cannot be opened."""

    exit_code = EX_UNAVAILABLE


class NoCameraError(SourceError):
    """No ``--source`` was given and no camera could be found."""


class DataError(DjsmileError):
    """A dataset folder is missing, empty, or has no usable images."""

    exit_code = EX_DATAERR


class MissingDependencyError(DjsmileError):
    """An optional dependency (e.g. TensorFlow for ``djsmile train``) is missing."""

    exit_code = EX_UNAVAILABLE


class GpioError(DjsmileError):
    """A GPIO pin (LED, shutter, button) cannot be used: no GPIO access, pin busy."""

    exit_code = EX_UNAVAILABLE


class BusyError(DjsmileError):
    """Something another process holds (the state folder of a running ``djsmile run``). Exit 75."""

    exit_code = EX_TEMPFAIL


class SpeechError(DjsmileError):
    """The speech engine or audio output is unavailable (missing binary or voice, playback failed)."""

    exit_code = EX_UNAVAILABLE

"""The project's exception types, in one place (like gpiozero's ``exc.py``).

Errors a user can fix carry a one-line message naming the thing and the fix.
Which exit code each type ends ``djsmile`` with is decided in ONE table in the
CLI (:data:`djsmile.cli.EXIT_CODES`), not here. Where a builtin fits, a type
also subclasses it (``ConfigError`` is a ``ValueError``, ``MissingDependencyError``
an ``ImportError``), so library callers can catch the builtin.
"""

# Exit codes (sysexits.h). Which exception gets which: djsmile.cli.EXIT_CODES.
EX_OK = 0
EX_USAGE = 64        # bad command line
EX_DATAERR = 65      # bad input data (e.g. an empty class folder)
EX_NOINPUT = 66      # an input file is missing or unreadable (model, image, --source)
EX_UNAVAILABLE = 69  # a needed service/device/file is unavailable (camera, GPIO, TFLite runtime, cascade)
EX_SOFTWARE = 70     # internal error
EX_CANTCREAT = 73    # an output (file, folder) cannot be created (state folder not writable)
EX_TEMPFAIL = 75     # a temporary failure: try again later (port in use)
EX_CONFIG = 78       # wrong config text (systemd: RestartPreventExitStatus=78)
EX_INTERRUPTED = 130  # Ctrl+C (128 + SIGINT, as a shell reports it)


class DjsmileError(Exception):
    """Base class of every error djsmile raises on purpose (exit 70 unless a subclass says otherwise)."""


class ConfigError(DjsmileError, ValueError):
    """The config text is wrong: a key, a value, or keys that contradict each other. Exit 78."""


class UsageError(DjsmileError):
    """A bad command line. Exit 64.

    ``usage`` (optional) is the usage text of the (sub)command to print before the message.
    """

    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class DataError(DjsmileError, ValueError):
    """Input data is bad: a dataset folder is empty or has no usable images. Exit 65."""


class NoInputError(DjsmileError):
    """An input file or folder is missing or unreadable. Exit 66."""


class ModelError(NoInputError):
    """A model file is missing, corrupt, or not a TFLite model. Exit 66."""


class UnavailableError(DjsmileError):
    """Something needed is unavailable on this machine (device, runtime, file it ships). Exit 69."""


class MissingDependencyError(UnavailableError, ImportError):
    """An optional dependency (e.g. TensorFlow for ``djsmile train``) is missing. Exit 69."""


class RuntimeMissingError(MissingDependencyError):
    """No TFLite interpreter (ai_edge_litert, tflite_runtime, tensorflow) is installed. Exit 69."""


class SourceError(UnavailableError):
    """A frame source (camera, video file, image folder) cannot be opened. Exit 69."""


class NoCameraError(SourceError):
    """No ``--source`` was given and no camera could be found. Exit 69."""


class SourceNotFoundError(NoInputError, SourceError):
    """A ``--source`` file or folder does not exist. Exit 66 (missing input)."""


class GpioError(UnavailableError):
    """A GPIO pin (LED, shutter, button) cannot be used: no GPIO access, pin busy. Exit 69."""


class CascadeError(UnavailableError):
    """The Haar cascade file is missing or unreadable. Exit 69."""


class CantCreateError(DjsmileError, OSError):
    """An output file or folder cannot be created or written (e.g. the state folder). Exit 73."""


class TempFailError(DjsmileError):
    """A failure that may pass by itself (port in use): systemd retries. Exit 75."""


class AddressInUseError(TempFailError, ConnectionError):
    """A listen address is taken by another program. Exit 75."""


class BusyError(TempFailError):
    """Something another process holds (the state folder of a running ``djsmile run``). Exit 75."""


class SpeechError(UnavailableError):
    """The speech engine or audio output is unavailable (missing binary or voice, playback failed). Exit 69."""

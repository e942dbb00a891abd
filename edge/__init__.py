"""djsmile's on-device package: everything that runs on the Raspberry Pi.

Importing ``edge`` (or any module in it) never imports TensorFlow.
Data flows one way: sources -> faces -> model -> trigger -> actions.
"""

__version__ = "0.1.0"

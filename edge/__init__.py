"""djsmile's on-device package: everything that runs on the Raspberry Pi.

Installed as ``djsmile`` (setup.cfg maps the ``edge/`` folder to it): importing
``djsmile`` or any of its device modules never imports TensorFlow.
Data flows one way: sources -> faces -> model -> trigger -> actions.
"""

__version__ = "0.1.0"

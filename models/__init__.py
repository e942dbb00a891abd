"""The shipped smile model (package data ``djsmile.models``): ``smile_int8.tflite`` and its JSON sidecar."""

"""Keras -> quantized TFLite conversion (needs TensorFlow: pip install '.[train]')."""

"""Training the smile CNN (needs TensorFlow: pip install '.[train]')."""

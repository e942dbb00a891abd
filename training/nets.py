"""The networks: our small gray CNN and the 2019 app's architecture (``--arch seed``).

TensorFlow / Keras is imported inside the functions, so importing this module
is cheap and works without TensorFlow.
"""

from __future__ import annotations

from edge.errors import MissingDependencyError

TF_HINT = "TensorFlow is not installed: pip install '.[train]'"

#: arch -> (default input size, output kind written to the model metadata)
ARCHS = {"small": (48, "sigmoid"), "seed": (100, "softmax")}


def import_keras():
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except ImportError:
        raise MissingDependencyError(TF_HINT) from None
    return keras


def small(input_size: int = 48, width: int = 16, dropout: float = 0.3):
    """Four 3x3 conv blocks (BN + ReLU, 2x2 max-pool after the first three), global average pool, sigmoid.

    About 0.1 M parameters at width 16 (about 100 KB as int8); BN folds into
    the convolutions on conversion.
    """
    keras = import_keras()
    L = keras.layers
    x = inp = keras.Input((input_size, input_size, 1), name="face")
    for i, mult in enumerate((1, 2, 4, 8)):
        x = L.Conv2D(width * mult, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
        if i < 3:
            x = L.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(dropout, name="drop")(x)
    out = L.Dense(1, activation="sigmoid", name="p_smile")(x)
    return keras.Model(inp, out, name=f"small{input_size}w{width}")


def seed(input_size: int = 100):
    """The 2019 app: Conv32-Pool-Drop, Conv64-Pool-Drop, Dense 500, softmax over 2 classes (about 17 M parameters)."""
    keras = import_keras()
    L = keras.layers
    x = inp = keras.Input((input_size, input_size, 1), name="face")
    x = L.Conv2D(32, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Dropout(0.25)(x)
    x = L.Conv2D(64, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Dropout(0.25)(x)
    x = L.Flatten()(x)
    x = L.Dense(500, activation="relu")(x)
    out = L.Dense(2, activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="seed2019")


def build(arch: str, input_size: int | None = None, width: int = 16):
    if arch == "small":
        return small(input_size or ARCHS["small"][0], width=width)
    if arch == "seed":
        return seed(input_size or ARCHS["seed"][0])
    raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")

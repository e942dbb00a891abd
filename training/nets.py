"""The networks: our small gray CNN and the 2019 app's architecture (``--arch seed``).

TensorFlow / Keras is imported inside the functions, so importing this module
is cheap and works without TensorFlow.
"""

from __future__ import annotations

from djsmile.errors import MissingDependencyError

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


#: channels of the four blocks of ``small`` (block 1 a plain stride-2 conv, blocks 2-4 depthwise-separable)
SMALL_WIDTHS = (32, 64, 128, 256)


def small(input_size: int = 48, widths=SMALL_WIDTHS, dropout: float = 0.3, separable_from: int = 1,
          stem_stride: int = 2, head: str = "flatten"):
    """Four 3x3 conv blocks (BN + ReLU; 2x2 max-pool after the first three), global average pool, sigmoid.

    The first block is a plain conv with stride ``stem_stride`` (cheap at full
    resolution, for training time and latency alike); blocks
    ``separable_from`` and later are depthwise-separable.
    BN folds into the convolutions on conversion.
    """
    keras = import_keras()
    L = keras.layers
    x = inp = keras.Input((input_size, input_size, 1), name="face")
    for i, w in enumerate(widths):
        if i >= separable_from:
            x = L.SeparableConv2D(w, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        else:
            stride = stem_stride if i == 0 else 1
            x = L.Conv2D(w, 3, strides=stride, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = L.BatchNormalization(name=f"bn{i + 1}")(x)
        x = L.ReLU(name=f"relu{i + 1}")(x)
        if i < len(widths) - 1 and not (i == 0 and stem_stride > 1):
            x = L.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if head == "gap":
        x = L.GlobalAveragePooling2D(name="gap")(x)
    else:  # keep where on the face a feature is (mouth vs eyes): pool to 3x3 and flatten
        x = L.MaxPooling2D(2, name="pool4")(x)
        x = L.Flatten(name="flat")(x)
    x = L.Dropout(dropout, name="drop")(x)
    out = L.Dense(1, activation="sigmoid", name="p_smile")(x)
    return keras.Model(inp, out, name=f"small{input_size}")


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


def build(arch: str, input_size: int | None = None, widths=None, head: str = "flatten"):
    if arch == "small":
        return small(input_size or ARCHS["small"][0], widths=tuple(widths or SMALL_WIDTHS), head=head)
    if arch == "seed":
        return seed(input_size or ARCHS["seed"][0])
    raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")

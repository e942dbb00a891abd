"""Block TensorFlow in a subprocess: code that makes ``import tensorflow`` (and keras) fail, as on a Pi.

Prepend ``BLOCK_TF`` to a ``python -c`` program.
"""

BLOCK_TF = (
    "import sys, importlib.abc\n"
    "class _NoTF(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):\n"
    "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
    "sys.meta_path.insert(0, _NoTF())\n"
)

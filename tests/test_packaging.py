"""What a user installs: one ``djsmile`` namespace, the model as package data, layering checked by import-linter.

A wheel is built once from this tree; it is installed the ways a Pi owner would
(``pip install --user`` into a throwaway HOME, and into a fresh venv) and run from
an unrelated folder. The same wheel, unpacked, is what import-linter checks: the
installed layout is the one that matters (in the source tree ``djsmile`` maps to
``edge/`` and its sub-packages to sibling folders, which grimp cannot follow).
"""

from __future__ import annotations

import ast
import configparser
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

#: stdlib / namedtuple idioms that start with "_" but are public API
PUBLIC_UNDERSCORE = {"_exit", "_replace", "_asdict", "_fields", "_make", "_getframe"}


def _deps_paths() -> list:
    """This interpreter's site-packages folders (numpy, cv2, the runtime...), lent to installs made with --no-deps.

    Added as plain path entries, so an editable install's finder (.pth) in them is not activated.
    """
    return [p for p in sys.path if p.rstrip("/").endswith("site-packages")]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("djsmile-*.whl")
    return whl


@pytest.fixture(scope="session")
def unpacked(wheel, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(d)
    return d


def test_wheel_holds_one_namespace_and_the_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"djsmile"}, f"top-level entries besides djsmile: {sorted(tops)}"
    assert "djsmile/models/smile_int8.tflite" in names
    assert "djsmile/models/smile_int8.json" in names
    assert "djsmile/web/static/index.html" in names       # the live view's page, read with importlib.resources


def _photo_folder(tmp_path: Path) -> Path:
    """A few frames to run over: real photos when ../shared is here, else plain images."""
    import cv2
    folder = tmp_path / "frames"
    folder.mkdir()
    shared = ROOT.parent / "shared" / "datasets" / "djsmile" / "photos" / "smile"
    photos = sorted(shared.glob("*.jpg"))[:4] if shared.is_dir() else []
    if photos:
        for i, p in enumerate(photos):
            (folder / f"{i:02d}.jpg").write_bytes(p.read_bytes())
    else:
        for i in range(4):
            cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((120, 160, 3), 40 * i, np.uint8))
    return folder


def _run_installed(cmd, tmp_path, env):
    unrelated = tmp_path / "elsewhere"
    unrelated.mkdir(exist_ok=True)
    return subprocess.run(cmd + ["run", "--source", str(_photo_folder(tmp_path)), "--state-dir",
                                 str(tmp_path / "state"), "--log-level", "INFO"],
                          cwd=unrelated, env=env, capture_output=True, text=True, timeout=180)


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def test_user_install_finds_its_model_from_an_unrelated_folder(wheel, tmp_path):
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    if not base_python.exists():
        pytest.skip(f"no base interpreter at {base_python}")
    home = tmp_path / "home"
    home.mkdir()
    env = _clean_env(HOME=str(home), PYTHONNOUSERSITE="")
    env.pop("PYTHONNOUSERSITE")
    r = subprocess.run([str(base_python), "-m", "pip", "install", "-q", "--user", "--no-deps", "--no-index",
                        str(wheel)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    script = home / ".local" / "bin" / "djsmile"
    assert script.is_file(), "pip --user did not install the djsmile command"
    env["PYTHONPATH"] = os.pathsep.join(_deps_paths())  # numpy, cv2, the runtime: not what this test is about
    p = _run_installed([str(script)], tmp_path, env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert str(home / ".local") in p.stderr, "the model was not loaded from the --user install"
    assert "smile_int8.tflite" in p.stderr
    # Nothing generic at top level: 'edge', 'training', 'convert' are not importable names.
    for name in ("edge", "training", "convert"):
        q = subprocess.run([str(base_python), "-c", f"import {name}"], cwd=tmp_path / "elsewhere", env=env,
                           capture_output=True, text=True, timeout=60)
        assert q.returncode != 0 and "ModuleNotFoundError" in q.stderr, f"'import {name}' works after install"


def test_venv_install_finds_its_model_from_an_unrelated_folder(wheel, tmp_path):
    vdir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(vdir)
    py = vdir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, timeout=60).stdout.strip()
    with zipfile.ZipFile(wheel) as z:  # what 'pip install wheel' puts in site-packages, minus pip itself
        z.extractall(site)
    Path(site, "_deps.pth").write_text("".join(d + "\n" for d in _deps_paths()))
    env = _clean_env()
    p = _run_installed([str(py), "-m", "djsmile"], tmp_path, env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert site in p.stderr, "the model was not loaded from the venv's site-packages"
    q = subprocess.run([str(py), "-c", "import edge"], cwd=tmp_path / "elsewhere", env=env,
                       capture_output=True, text=True, timeout=60)
    assert q.returncode != 0


# --------------------------------------------------------------------------- layering
def _lint(unpacked: Path, config: Path) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom importlinter.cli import lint_imports\n"
            "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))\n")
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    return subprocess.run([sys.executable, "-c", code, str(config)], cwd=unpacked, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold(unpacked):
    pytest.importorskip("importlinter", reason="pip install '.[dev]' (import-linter)")
    r = _lint(unpacked, ROOT / ".importlinter")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_import_contracts_catch_an_upward_import(unpacked, tmp_path):
    """The contract is not vacuous: a part importing the CLI breaks it."""
    pytest.importorskip("importlinter", reason="pip install '.[dev]' (import-linter)")
    import shutil
    copy = tmp_path / "pkg"
    shutil.copytree(unpacked / "djsmile", copy / "djsmile")
    with open(copy / "djsmile" / "trigger.py", "a") as f:
        f.write("\nfrom . import cli  # an upward import\n")
    with open(copy / "djsmile" / "faces.py", "a") as f:
        f.write("\nfrom .training import data  # the device reaching into training\n")
    r = _lint(copy, ROOT / ".importlinter")
    assert r.returncode != 0
    assert "djsmile.trigger -> djsmile.cli" in r.stdout
    assert "djsmile.faces -> djsmile.training" in r.stdout


def test_every_device_module_is_under_the_contract():
    cp = configparser.ConfigParser()
    cp.read(ROOT / ".importlinter")
    listed = set(cp["importlinter:contract:device-no-training"]["source_modules"].split())
    modules = {"djsmile." + p.stem for p in (ROOT / "edge").glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {"djsmile." + p.name for p in (ROOT / "edge").iterdir() if (p / "__init__.py").is_file()}
    assert modules - listed == set(), "add these modules to .importlinter's device-no-training contract"


def test_every_device_module_is_in_a_layer():
    cp = configparser.ConfigParser()
    cp.read(ROOT / ".importlinter")
    layers = cp["importlinter:contract:layers"]["layers"].split("\n")
    listed = {name.strip(" ()") for layer in layers for name in layer.replace("|", ":").split(":")} - {""}
    modules = {p.stem for p in (ROOT / "edge").glob("*.py") if p.stem != "__init__"}
    modules |= {p.name for p in (ROOT / "edge").iterdir() if (p / "__init__.py").is_file()}
    assert modules - listed == set(), "add these modules to a layer of .importlinter's layers contract"


def _private_uses(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    yield f"{path.name}:{node.lineno}: from {node.module} import {a.name}"
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            v = node.value
            if isinstance(v, ast.Name) and v.id in ("self", "cls"):
                continue
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "super":
                continue
            if node.attr in PUBLIC_UNDERSCORE:
                continue
            yield f"{path.name}:{node.lineno}: {ast.unparse(node)}"


def test_no_module_reaches_into_another_objects_private_names():
    found = [u for root in ("edge", "training", "convert")
             for f in sorted((ROOT / root).rglob("*.py")) for u in _private_uses(f)]
    assert found == [], "private names used from outside their object:\n" + "\n".join(found)

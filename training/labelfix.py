"""Reviewed label corrections (``training/label_fixes.csv``), applied at load time; the data is never modified.

The CSV has a header and one row per reviewed image::

    dataset,file,old_label,new_label,reason
    djsmile-faces,no_smile/123.jpg,no_smile,smile,broad open-mouth grin
    djsmile-faces,smile/77.jpg,smile,drop,drawing / no readable face

``dataset`` is a data root's name as ``djsmile train`` names it
(``djsmile-faces``, ``djsmile-photos``, ``smilesmiled``), ``file`` the path
inside it (``<class>/<name>``), ``new_label`` a class or ``drop`` (left out),
and ``reason`` says why (required). A row whose ``old_label`` does not match
the file's folder is an error (the CSV was made for other data).

A ``djsmile-faces`` face is cut from the ``djsmile-photos`` photo of the same
``<class>/<name>`` and shares its label (the search term), so a fix for one
also applies to the other unless that one has its own row.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from djsmile.errors import DataError

CLASSES = ("no_smile", "smile")
DROP = "drop"
COLUMNS = ("dataset", "file", "old_label", "new_label", "reason")
#: the committed, reviewed file (package data next to this module)
DEFAULT_PATH = Path(__file__).resolve().parent / "label_fixes.csv"
SIBLINGS = (("-faces", "-photos"), ("-photos", "-faces"))


def parse(text: str, source: str = "label_fixes.csv") -> dict:
    """``{(dataset, file): row}`` from CSV text; DataError (one line, naming the row) on a bad row."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        raise DataError(f"{source}: the first line must be the header {','.join(COLUMNS)}")
    out: dict = {}
    for n, r in enumerate(rows[1:], start=2):
        if not r or all(not c.strip() for c in r):
            continue
        if len(r) != len(COLUMNS):
            raise DataError(f"{source} line {n}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), got {len(r)}")
        d = dict(zip(COLUMNS, (c.strip() for c in r)))
        if d["old_label"] not in CLASSES:
            raise DataError(f"{source} line {n}: old_label {d['old_label']!r} is not one of {', '.join(CLASSES)}")
        if d["new_label"] not in CLASSES + (DROP,) or d["new_label"] == d["old_label"]:
            raise DataError(f"{source} line {n}: new_label {d['new_label']!r} must be the other class or 'drop'")
        if not d["reason"]:
            raise DataError(f"{source} line {n}: every fix needs a reason")
        if d["file"].split("/", 1)[0] != d["old_label"]:
            raise DataError(f"{source} line {n}: {d['file']} is not in the {d['old_label']}/ folder")
        key = (d["dataset"], d["file"])
        if key in out:
            raise DataError(f"{source} line {n}: {d['dataset']}/{d['file']} is listed twice")
        out[key] = d
    return out


def load(path) -> dict:
    """The fixes in ``path``; ``None`` or ``"none"`` = no fixes (the original labels)."""
    if path is None or str(path).lower() == "none":
        return {}
    p = Path(path)
    try:
        return parse(p.read_text(encoding="utf-8"), str(p))
    except FileNotFoundError:
        raise DataError(f"label fixes {p} not found (use --label-fixes none for the original labels)") from None


def lookup(fixes: dict, dataset: str, file: str):
    """The fix row for one image (its own row first, else its faces/photos sibling's), or None."""
    row = fixes.get((dataset, file))
    if row is not None:
        return row
    for a, b in SIBLINGS:
        if dataset.endswith(a):
            row = fixes.get((dataset[: -len(a)] + b, file))
            if row is not None:
                return row
    return None


def new_label(fixes: dict, dataset: str, file: str, label: int):
    """The label after the fixes: an int class index, ``None`` for dropped, ``label`` when not listed."""
    row = lookup(fixes, dataset, file)
    if row is None:
        return label
    if CLASSES.index(row["old_label"]) != label:
        raise DataError(f"label fix for {dataset}/{file} says old_label {row['old_label']} "
                        f"but the file is labelled {CLASSES[label]}")
    return None if row["new_label"] == DROP else CLASSES.index(row["new_label"])


def apply(items, fixes: dict) -> dict:
    """Relabel ``items`` (``.root``, ``.rel``, ``.label``) in place; returns ``{"relabelled", "dropped"}``
    and sets ``item.dropped`` and ``item.orig_label`` (the label the data gives). Nothing on disk changes."""
    n_re = n_drop = 0
    for it in items:
        it.orig_label = it.label
        lab = new_label(fixes, it.root, it.rel, it.label)
        it.dropped = lab is None
        if lab is None:
            n_drop += 1
        elif lab != it.label:
            it.label = lab
            n_re += 1
    return {"relabelled": n_re, "dropped": n_drop}


def dataset_of(path) -> tuple[str, str]:
    """``(dataset, file)`` for an image path (symlinks followed): the root's name as training names it."""
    from djsmile.training.data import root_name
    p = Path(os.path.realpath(path))
    return root_name(p.parent.parent), f"{p.parent.name}/{p.name}"

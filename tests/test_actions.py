"""Actions on a shot: LED, shutter pulse, photo + sidecar, events.jsonl, joke (real mock-pin states)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import namedtuple
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile import storage as storage_mod
from djsmile.actions import Actions
from djsmile.config import Config
from types import SimpleNamespace

from djsmile.errors import ConfigError, GpioError
from djsmile.sources import Frame
from djsmile.trigger import TrackedFace, TriggerResult

LED_PIN, SHUTTER_PIN = 17, 27
EVENT_KEYS = {"time", "frame", "faces", "photo"}


def make_cfg(**overrides) -> Config:
    cfg = Config()
    cfg.set("gpio.button_enabled", False)
    cfg.set("jokes.on_smile", True)
    cfg.set("storage.min_free_mb", 0.0)
    for key, value in overrides.items():
        cfg.set(key.replace("__", "."), value)
    return cfg


def still_image(seed: int = 0, h: int = 120, w: int = 160) -> np.ndarray:
    """A noisy BGR image (noise keeps JPEGs from being tiny, for the size bound)."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def frame(index: int, image: np.ndarray | None = None) -> Frame:
    img = still_image(index) if image is None else image
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return Frame(gray=gray, index=index, t=index / 30.0, still_fn=lambda: img)


def result(index: int, *, fired: bool = False, holding: bool = False, n_faces: int = 1) -> TriggerResult:
    faces = [TrackedFace(id=i + 1, box=(np.int32(10 + 40 * i), 20, 30, 30), p_smile=np.float32(0.9 - 0.1 * i),
                         p_smooth=0.8, smiling=True, frames_smiling=3) for i in range(n_faces)]
    return TriggerResult(frame=index, t=index / 30.0, fired=fired,
                         state="smiling" if holding else "watching", faces=faces, holding=holding)


def shoot(act: Actions, index: int, image: np.ndarray | None = None, wait: bool = True) -> None:
    act.update(result(index, fired=True, holding=True), frame(index, image))
    if wait:
        assert act.wait_idle(10.0)


def events(act: Actions) -> list[dict]:
    if not act.events_path.exists():
        return []
    return [json.loads(line) for line in act.events_path.read_text().splitlines()]


def files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.exists() else []


@pytest.fixture
def make_actions(mock_factory, tmp_path):
    made = []

    def _make(cfg=None, **kw):
        cfg = cfg or make_cfg()
        act = Actions(cfg.gpio, cfg.storage, tmp_path / "state", **kw)
        made.append(act)
        return act

    yield _make
    for act in made:
        act.close(timeout=5.0)


# -- shutter ------------------------------------------------------------------

@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize("pulse_ms", [100, 250])
def test_shutter_pulse_length_and_polarity(make_actions, mock_factory, active_high, pulse_ms):
    act = make_actions(make_cfg(gpio__shutter_active_high=active_high, gpio__shutter_pulse_ms=pulse_ms,
                                storage__save_photos=False, gpio__led_enabled=False))
    pin = mock_factory.pin(SHUTTER_PIN)
    idle = not active_high
    assert pin.state == idle, "shutter must start inactive"
    for i in range(3):  # frames without a shot leave the pin alone
        act.update(result(i, holding=True), frame(i))
    pin.clear_states()
    act.update(result(3, fired=True, holding=True), frame(3))
    time.sleep(pulse_ms / 1000 + 0.2)
    expected = [(0.0, idle), (0.0, not idle), (pulse_ms / 1000, idle)]
    assert len(pin.states) == len(expected), pin.states
    pin.assert_states_and_times(expected)
    act.close()
    assert pin.state == idle


def test_shutter_inactive_after_close_mid_pulse(make_actions, mock_factory):
    act = make_actions(make_cfg(gpio__shutter_active_high=False, gpio__shutter_pulse_ms=2000,
                                storage__save_photos=False))
    pin = mock_factory.pin(SHUTTER_PIN)
    act.update(result(0, fired=True, holding=True), frame(0))
    time.sleep(0.05)
    assert not pin.state  # active low: the pulse drives the pin low
    t0 = time.monotonic()
    act.close()
    assert time.monotonic() - t0 < 1.0
    assert pin.state  # back high = inactive


# -- LED ------------------------------------------------------------------

def test_led_hold_follows_holding_and_is_off_after_close(make_actions, mock_factory):
    act = make_actions(make_cfg(gpio__led_mode="hold", storage__save_photos=False))
    pin = mock_factory.pin(LED_PIN)
    seen = []
    for i, holding in enumerate([False, True, True, False, True]):
        act.update(result(i, holding=holding, fired=(i == 2)), frame(i))
        seen.append(bool(pin.state))
    assert seen == [False, True, True, False, True]
    act.close()
    assert not pin.state


def test_led_blink_mode_one_blink_per_shot(make_actions, mock_factory):
    act = make_actions(make_cfg(gpio__led_mode="blink", gpio__led_blink_s=0.2, storage__save_photos=False))
    pin = mock_factory.pin(LED_PIN)
    act.update(result(0, holding=True), frame(0))
    assert not pin.state, "blink mode does not follow holding"
    pin.clear_states()
    act.update(result(1, fired=True, holding=True), frame(1))
    time.sleep(0.4)
    expected = [(0.0, False), (0.0, True), (0.2, False)]
    assert len(pin.states) == len(expected), pin.states
    pin.assert_states_and_times(expected)


def test_switched_off_gpio_leaves_pins_alone(make_actions, mock_factory):
    act = make_actions(make_cfg(gpio__led_enabled=False, gpio__shutter_enabled=False,
                                storage__save_photos=False))
    assert act.led is None and act.shutter is None
    shoot(act, 0)
    assert len(events(act)) == 1


# -- photos and events --------------------------------------------------------

def test_photo_sidecar_and_event_written(make_actions):
    act = make_actions(make_cfg(storage__jpeg_quality=95))
    yy, xx = np.mgrid[0:240, 0:320]
    img = np.dstack([xx * 255 // 320, yy * 255 // 240, (xx + yy) * 255 // 560]).astype(np.uint8)
    shoot(act, 42, img)
    photos = files(act.photo_dir, "*.jpg")
    assert len(photos) == 1
    photo = photos[0]
    assert photo.name.endswith("_f000042.jpg")
    datetime.strptime(photo.name[:19], "%Y%m%d-%H%M%S-%f")  # timestamped name
    back = cv2.imread(str(photo))
    assert back is not None and back.shape == img.shape
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 3  # it is this frame's still
    side = json.loads(photo.with_suffix(".json").read_text())
    assert side["frame"] == 42
    assert side["faces"][0]["box"] == [10, 20, 30, 30]
    assert side["faces"][0]["p_smile"] == pytest.approx(0.9, abs=1e-3)
    assert side["faces"][0]["p_smooth"] == pytest.approx(0.8, abs=1e-3)
    (ev,) = events(act)
    assert ev["photo"] == str(photo)
    # one rule for "photo" (issue 24): the JPEG's absolute path, in the event line and in its sidecar alike
    assert side["photo"] == ev["photo"] and Path(side["photo"]).is_absolute()
    assert datetime.fromisoformat(side["time"]) == datetime.fromisoformat(ev["time"])


def test_events_jsonl_lines_have_exact_keys(make_actions):
    act = make_actions(make_cfg(storage__save_photos=False))
    for i in range(10):
        act.update(result(i, holding=i >= 5, fired=(i == 7), n_faces=2), frame(i))
    assert act.wait_idle(5)
    shoot(act, 20)
    lines = act.events_path.read_text().splitlines()
    assert len(lines) == 2
    for line, want_frame in zip(lines, (7, 20)):
        ev = json.loads(line)
        assert set(ev) == EVENT_KEYS
        assert ev["frame"] == want_frame
        assert datetime.fromisoformat(ev["time"]).tzinfo is not None
        assert ev["photo"] is None  # photos are off
        assert len(ev["faces"]) >= 1
        for face in ev["faces"]:
            assert set(face) == {"box", "p_smile"}
            assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
            assert isinstance(face["p_smile"], float) and 0.0 <= face["p_smile"] <= 1.0
    assert len(json.loads(lines[0])["faces"]) == 2


@pytest.mark.parametrize("fail", ["fsync", "encoder"])
def test_no_partial_photo_after_failure_mid_write(make_actions, monkeypatch, fail):
    act = make_actions()
    calls = {"n": 0}
    if fail == "fsync":
        real = storage_mod.os.fsync

        def bad_fsync(fd):
            calls["n"] += 1
            if calls["n"] == 1:  # the photo's fsync: the disk fails mid-write
                raise OSError(5, "Input/output error")
            return real(fd)
        monkeypatch.setattr(storage_mod.os, "fsync", bad_fsync)
    else:
        real = storage_mod.cv2.imencode

        def bad_imencode(*a, **kw):
            calls["n"] += 1
            if calls["n"] == 1:
                raise cv2.error("encoder broke")
            return real(*a, **kw)
        monkeypatch.setattr(storage_mod.cv2, "imencode", bad_imencode)
    shoot(act, 1)
    assert files(act.photo_dir, "*.jpg") == []
    assert files(act.photo_dir, "*.tmp") == []  # pathlib's * also matches hidden names
    assert files(act.photo_dir, "*.json") == []
    (ev,) = events(act)
    assert ev["photo"] is None
    # the writer survives and the next shot is saved
    shoot(act, 2)
    assert len(files(act.photo_dir, "*.jpg")) == 1
    assert events(act)[-1]["photo"] == str(files(act.photo_dir, "*.jpg")[0])


def test_a_photo_never_exists_without_its_sidecar(make_actions, monkeypatch):
    """Whenever the process could be killed (between any two file operations), every photo has its sidecar."""
    act = make_actions()
    real = storage_mod.atomic_write
    orphans = []

    def watched(path, data, *a, **kw):
        real(path, data, *a, **kw)
        for p in act.photo_dir.glob("*.jpg"):
            if not p.with_suffix(".json").exists():
                orphans.append(p.name)
    monkeypatch.setattr(storage_mod, "atomic_write", watched)
    for i in range(3):
        shoot(act, i)
    assert len(files(act.photo_dir, "*.jpg")) == 3
    assert orphans == [], f"photos seen without their sidecar: {orphans}"


def test_sidecar_left_without_its_photo_is_removed_at_start(mock_factory, tmp_path):
    photos = tmp_path / "state" / "photos"
    photos.mkdir(parents=True)
    (photos / "20260101-000000-000_f000001.json").write_text("{}")  # killed before the photo landed
    (photos / "20260101-000000-000_f000002.jpg").write_bytes(b"\xff\xd8")
    (photos / "20260101-000000-000_f000002.json").write_text("{}")
    act = Actions(make_cfg().gpio, make_cfg().storage, tmp_path / "state")
    try:
        assert [p.name for p in files(photos, "*.json")] == ["20260101-000000-000_f000002.json"]
    finally:
        act.close()


def test_event_photo_path_is_absolute_with_a_relative_state_dir(mock_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    act = Actions(make_cfg().gpio, make_cfg().storage, Path("state"))
    try:
        shoot(act, 3)
        (ev,) = events(act)
    finally:
        act.close()
    monkeypatch.chdir("/")  # read from elsewhere, as a script would
    assert Path(ev["photo"]).is_absolute() and Path(ev["photo"]).is_file()


def test_sidecar_records_the_state_that_fired(make_actions):
    from djsmile.trigger import Trigger
    cfg = make_cfg()
    trig = Trigger(cfg.trigger, 0.5)
    act = make_actions(cfg)
    fired = None
    for i in range(30):
        res = trig.update(i, i / 30.0, [(10, 20, 30, 30)], [0.95])
        act.update(res, frame(i))
        if res.fired:
            fired = res
            break
    assert fired is not None and act.wait_idle(10.0)
    (photo,) = files(act.photo_dir, "*.jpg")
    assert json.loads(photo.with_suffix(".json").read_text())["state"] == "smiling"


FULL_DISK_SCRIPT = """
import json, resource, signal, sys
from djsmile.storage import EventLog
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit is short, then EFBIG: a full disk
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
log = EventLog(sys.argv[1])
ok = failed = 0
for i in range(40):
    try:
        log.append({"time": "2026-12-01T10:00:00+00:00", "frame": i,
                    "faces": [{"box": [1, 2, 3, 4], "p_smile": 0.9}], "photo": None})
        ok += 1
    except OSError:
        failed += 1
print(ok, failed)
"""


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]  # raises on a torn or glued line


def test_full_disk_never_leaves_half_an_event_line(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "events.jsonl"
    p = subprocess.run([sys.executable, "-c", FULL_DISK_SCRIPT, str(path), "1000"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ok, failed = map(int, p.stdout.split())
    assert ok >= 1 and failed >= 1  # the "disk" did fill up
    assert len(_lines(path)) == ok  # whole lines only, one per event that said it was written
    # space is back: the next run appends after the last whole line
    storage_mod.EventLog(path).append({"frame": 99})
    assert [e["frame"] for e in _lines(path)][-1] == 99


def test_torn_tail_found_at_start_is_set_aside_not_appended_to(tmp_path, caplog):
    path = tmp_path / "events.jsonl"
    path.write_text('{"frame": 1}\n{"frame": 2}\n{"time": "2026-12-01T10:0')
    with caplog.at_level(logging.WARNING):
        log = storage_mod.EventLog(path)
    log.append({"frame": 3})
    assert [e["frame"] for e in _lines(path)] == [1, 2, 3]
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("events.jsonl.torn")]
    assert aside.read_text() == '{"time": "2026-12-01T10:0'
    assert sum("events.jsonl" in r.getMessage() for r in caplog.records) == 1


def test_events_jsonl_is_rotated_at_its_size_bound(tmp_path):
    path = tmp_path / "events.jsonl"
    log = storage_mod.EventLog(path, max_bytes=1000)
    for i in range(100):
        log.append({"frame": i, "faces": [], "photo": None})
    old = path.with_name("events.jsonl.1")
    assert path.stat().st_size <= 1000 and old.stat().st_size <= 1000
    frames = [e["frame"] for e in _lines(old) + _lines(path)]
    assert frames == list(range(frames[0], 100)) and len(frames) >= 25  # newest kept, in order


def test_storage_max_events_mb_bounds_the_event_log(make_actions):
    act = make_actions(make_cfg(storage__max_events_mb=0.001, storage__save_photos=False))
    for i in range(40):
        shoot(act, i)
    assert act.events_path.stat().st_size <= 0.001 * 1024 * 1024
    assert events(act)[-1]["frame"] == 39


def test_leftover_temp_files_removed_at_start(mock_factory, tmp_path):
    photos = tmp_path / "state" / "photos"
    photos.mkdir(parents=True)
    (photos / ".20260101-000000-000_f000001.jpg.999.tmp").write_bytes(b"\xff\xd8half")
    act = Actions(make_cfg().gpio, make_cfg().storage, tmp_path / "state")
    try:
        assert files(photos, "*.tmp") == []
    finally:
        act.close()


def test_count_bound_deletes_oldest_with_sidecars(make_actions):
    act = make_actions(make_cfg(storage__max_photos=3, storage__max_photos_mb=0.0))
    for i in range(6):
        shoot(act, i)
    photos = files(act.photo_dir, "*.jpg")
    assert [p.name[-11:] for p in photos] == ["f000003.jpg", "f000004.jpg", "f000005.jpg"]
    assert sorted(p.stem for p in files(act.photo_dir, "*.json")) == [p.stem for p in photos]


def test_size_bound_deletes_oldest(make_actions, tmp_path):
    ok, buf = cv2.imencode(".jpg", still_image(0), [cv2.IMWRITE_JPEG_QUALITY, 90])
    one_mb = (len(buf) + 600) / (1024 * 1024)  # a photo plus its sidecar, roughly
    act = make_actions(make_cfg(storage__max_photos=0, storage__max_photos_mb=2.5 * one_mb))
    for i in range(6):
        shoot(act, i)
    photos = files(act.photo_dir, "*.jpg")
    assert [p.name[-11:] for p in photos] == ["f000004.jpg", "f000005.jpg"]
    total = sum(p.stat().st_size for p in act.photo_dir.iterdir())
    assert total <= 2.5 * one_mb * 1024 * 1024
    assert len(files(act.photo_dir, "*.json")) == 2


def test_free_space_floor_skips_photos_with_one_warning(make_actions, monkeypatch, caplog):
    Usage = namedtuple("Usage", "total used free")
    free = {"mb": 50}
    monkeypatch.setattr(storage_mod.shutil, "disk_usage",
                        lambda p: Usage(10_000 * 2**20, 0, free["mb"] * 2**20))
    act = make_actions(make_cfg(storage__min_free_mb=200.0))
    with caplog.at_level(logging.WARNING, logger="djsmile.storage"):
        for i in range(4):
            shoot(act, i)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "min_free_mb" in warnings[0].getMessage()
    assert files(act.photo_dir, "*.jpg") == []
    assert [e["photo"] for e in events(act)] == [None] * 4
    free["mb"] = 5000  # space freed: photos resume
    shoot(act, 4)
    assert len(files(act.photo_dir, "*.jpg")) == 1


def test_full_queue_drops_newest_photo_but_keeps_events(make_actions, monkeypatch):
    gate = threading.Event()
    real_save = storage_mod.PhotoStore.save

    def slow_save(self, *a, **kw):
        assert gate.wait(10)
        return real_save(self, *a, **kw)
    monkeypatch.setattr(storage_mod.PhotoStore, "save", slow_save)
    act = make_actions(queue_size=2)
    t0 = time.monotonic()
    for i in range(5):
        shoot(act, i, wait=False)
    assert time.monotonic() - t0 < 0.5, "the loop must not wait on the disk"
    gate.set()
    assert act.wait_idle(10)
    saved = sorted(p.name[-11:] for p in files(act.photo_dir, "*.jpg"))
    assert saved == ["f000000.jpg", "f000001.jpg"]  # the newest were dropped
    evs = events(act)
    assert [e["frame"] for e in evs] == [0, 1, 2, 3, 4]
    assert [e["photo"] is not None for e in evs] == [True, True, False, False, False]


def test_close_is_bounded_when_disk_hangs(make_actions, monkeypatch, mock_factory):
    gate = threading.Event()
    real_save = storage_mod.PhotoStore.save

    def stuck_save(self, *a, **kw):
        gate.wait(10)
        return real_save(self, *a, **kw)
    monkeypatch.setattr(storage_mod.PhotoStore, "save", stuck_save)
    act = make_actions(make_cfg(gpio__led_mode="hold"))
    shoot(act, 0, wait=False)
    shoot(act, 1, wait=False)
    t0 = time.monotonic()
    act.close(timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    assert not mock_factory.pin(LED_PIN).state
    gate.set()  # the hung write completes; the queued one is dropped, nothing partial
    act.writer._thread.join(5)
    assert len(files(act.photo_dir, "*.jpg")) == 1
    assert files(act.photo_dir, "*.tmp") == []
    assert [e["photo"] is not None for e in events(act)] == [True, False]


# -- joke ---------------------------------------------------------------------

def test_on_joke_called_once_per_shot(make_actions):
    calls = []
    act = make_actions(make_cfg(storage__save_photos=False), on_joke=lambda: calls.append(1) or True)
    for i in range(12):
        act.update(result(i, holding=4 <= i, fired=i in (5, 10)), frame(i))
    assert len(calls) == 2


def test_on_joke_off_in_config_and_failures_do_not_stop_the_loop(make_actions, mock_factory, tmp_path):
    from djsmile import service
    calls = []
    cfg = make_cfg(storage__save_photos=False, jokes__on_smile=False)
    teller = SimpleNamespace(tell=lambda: calls.append(1))
    act = make_actions(cfg, on_joke=service.joke_on_shot(cfg.jokes, teller))   # as djsmile run wires it
    shoot(act, 0)
    assert calls == []
    act.close()

    def boom():
        raise RuntimeError("speaker on fire")
    act2 = make_actions(make_cfg(storage__save_photos=False), on_joke=boom)
    shoot(act2, 1)
    assert events(act2)[-1]["frame"] == 1


# -- config / GPIO errors -------------------------------------------------------

def test_same_pin_twice_is_a_config_error_naming_keys():
    # a config rule: found at load (djsmile.config.validate), before any pin is touched
    from djsmile.config import validate
    cfg = make_cfg(gpio__shutter_pin=LED_PIN)
    with pytest.raises(ConfigError, match="gpio.led_pin and gpio.shutter_pin"):
        validate(cfg)
    cfg = make_cfg(gpio__button_enabled=True, gpio__button_pin=SHUTTER_PIN)
    with pytest.raises(ConfigError, match="gpio.shutter_pin and gpio.button_pin"):
        validate(cfg)


def test_busy_pin_is_a_gpio_error_and_releases_the_other_pin(mock_factory, tmp_path):
    from gpiozero import OutputDevice

    busy = OutputDevice(SHUTTER_PIN)
    try:
        with pytest.raises(GpioError, match="gpio.shutter_pin") as e:
            Actions(make_cfg().gpio, make_cfg().storage, tmp_path)
        from djsmile.cli import exit_code_for
        assert exit_code_for(e.value) == 69
        from gpiozero import LED
        LED(LED_PIN).close()  # the LED pin was released again
    finally:
        busy.close()


def test_a_moment_out_of_file_descriptors_costs_no_photo_and_no_event(make_actions, monkeypatch):
    """EMFILE (the process briefly at its open-file limit) is waited out, not a lost shot."""
    import errno
    act = make_actions()
    fails = {"photo": 2, "event": 2}
    real_write, real_open = storage_mod.atomic_write, storage_mod.os.open

    def write(path, data, *a, **kw):
        if fails["photo"]:
            fails["photo"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_write(path, data, *a, **kw)

    def os_open(path, flags, *a, **kw):
        if str(path).endswith("events.jsonl") and fails["event"]:
            fails["event"] -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *a, **kw)
    monkeypatch.setattr(storage_mod, "atomic_write", write)
    monkeypatch.setattr(storage_mod.os, "open", os_open)
    shoot(act, 1)
    (ev,) = events(act)
    assert ev["photo"] and Path(ev["photo"]).is_file()
    assert fails == {"photo": 0, "event": 0}

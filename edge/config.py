"""Typed configuration: sections, defaults with descriptions, TOML load, validation.

Every key has a default and a one-line description (``djsmile config
--default`` prints them as a commented TOML file). Loading a file checks every
key: an unknown key, a wrong type, NaN/inf or an out-of-range value raises
:class:`~djsmile.errors.ConfigError` (exit code 78) naming the key, the bad value
and what is allowed. Rules across keys (GPIO pins that clash, ``web.listen``
syntax, the live view off localhost without a token) live here too
(:func:`validate`) and run at every load, so ``djsmile config --check`` and
``djsmile run`` always agree; no command finds a config error later.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore

from .errors import ConfigError


def opt(default, help, *, choices=None, min=None, max=None, secret=False):
    """A config key: its default, a one-line description, what is allowed, and whether it is a secret."""
    return field(default=default, metadata={"help": help, "choices": choices,
                                            "min": min, "max": max, "secret": secret})


@dataclass
class CameraConfig:
    """Where frames come from."""
    source: str = opt("", "frame source: '' = Pi camera, else webcam 0; or a webcam index, a video file, an image "
                      "folder")
    width: int = opt(640, "analysis frame width in pixels (Pi: the lores stream)", min=64, max=4096)
    height: int = opt(480, "analysis frame height in pixels", min=48, max=4096)
    still_width: int = opt(0, "still photo width on the Pi (0 = the sensor's full resolution)", min=0, max=16384)
    still_height: int = opt(0, "still photo height on the Pi (0 = the sensor's full resolution)", min=0, max=16384)
    fps: float = opt(30.0, "camera frame rate; for an image folder, the nominal rate that sets stream time",
                     min=0.1, max=240.0)
    realtime: bool = opt(False, "play a file source at its own frame rate instead of as fast as possible")
    loop: bool = opt(False, "play a file source (video, image folder) again from the start each time it ends; stream "
                     "time keeps rising (e.g. a clip in the live view)")
    stream_timeout_s: float = opt(30.0, "a network stream (URL source) that sends nothing for this long while opening "
                                  "or between frames ends the run (exit 69: the service restarts it)",
                                  min=1.0, max=3600.0)
    capture_thread: bool = opt(True, "read a camera (Pi camera, webcam, stream) on its own thread: the loop always "
                               "gets the newest frame, frames it had no time for are dropped and counted")


@dataclass
class DetectorConfig:
    """Face detection: a CNN back-end (BlazeFace, YuNet) or OpenCV's Haar cascade,
    plus tracking between full detections."""
    backend: str = opt("blazeface", "face detector: 'blazeface' (MediaPipe BlazeFace short range on the TFLite "
                       "runtime; the default: finds the most faces in dim light, fastest), 'yunet' (OpenCV "
                       "FaceDetectorYN; best on small faces; needs detector.yunet_model) or 'haar' (OpenCV's Haar "
                       "cascade, the original detector)", choices=("blazeface", "yunet", "haar"))
    blazeface_min_score: float = opt(0.5, "BlazeFace: lowest face score kept (higher = fewer, surer faces)",
                                     min=0.05, max=0.99)
    blazeface_model: str = opt("", "BlazeFace .tflite model ('' = the shipped face_detection_short_range.tflite)")
    blazeface_refine: float = opt(0.0, "BlazeFace: look again at a square this many face sides wide around each face "
                                  "found and take its eyes and mouth from that closer view (0 = off; 1.5 to 4). "
                                  "Steadier landmarks for the smile model's eye-aligned crop of small faces (2.5: +1.0 "
                                  "point on val faces in 640x480 frames) for one more BlazeFace run per face on "
                                  "full-detection frames; boxes unchanged", min=0.0, max=4.0)
    yunet_min_score: float = opt(0.7, "YuNet: lowest face score kept (0.9, OpenCV's demo default, loses faces in dim "
                                 "light)", min=0.05, max=0.99)
    yunet_model: str = opt("", "YuNet .onnx model (face_detection_yunet_2023mar.onnx); needed for backend 'yunet' ('' "
                           "= one shipped in the package, if any)")
    cascade: str = opt("", "Haar cascade XML ('' = OpenCV's frontal face default, then "
                       "/usr/share/opencv4/haarcascades)")
    detect_width: int = opt(320, "haar, yunet: frames are shrunk to this width before a full detection (0 = no "
                            "shrinking; BlazeFace always runs at 128x128)", min=0, max=4096)
    scale_factor: float = opt(1.15, "Haar scale step between pyramid levels", min=1.01, max=2.0)
    min_neighbors: int = opt(5, "Haar minimum neighbours (higher = fewer, surer faces)", min=0, max=50)
    upscale: float = opt(1.0, "enlarge the (shrunk) frame by this factor before detection: finds faces smaller than "
                         "the cascade's 24 px window, e.g. in small stock photos; costs about upscale^2 the time",
                         min=1.0, max=4.0)
    min_confidence: float = opt(0.0, "drop detections whose Haar confidence (the cascade's last-stage score, about -1 "
                                "to 12, real faces mostly above 2) is below this; 0 = keep all. Weeds out false faces "
                                "when min_neighbors is low", min=0.0, max=50.0)
    equalize: str = opt("auto", "contrast equalization of the small detection frame before Haar (the model sees the "
                        "original pixels): 'none', 'clahe' (adaptive; finds faces in dim rooms), 'hist' (global) or "
                        "'auto' (CLAHE only when the frame is dim: mean gray below 50)",
                        choices=("none", "clahe", "hist", "auto"))
    min_face_fraction: float = opt(0.15, "smallest face to find, as a fraction of the frame height", min=0.0, max=1.0)
    full_every: int = opt(10, "run a full-frame detection every N frames; between them search near the last faces (1 "
                          "= always full; a new face is found within N frames)", min=1, max=1000)
    track_margin: float = opt(0.5, "when tracking, search a region this fraction of the face size around the last box",
                              min=0.0, max=3.0)
    tracker: str = opt("template", "how faces are followed between full detections: 'template' (match the face's "
                       "patch, ~0.15 ms) or 'haar' (the cascade near the face, ~2-8 ms)", choices=("template", "haar"))
    async_full: str = opt("auto", "where full detections run: 'on' = on a worker thread while the frame loop keeps "
                          "tracking (no late frame), 'off' = in the frame loop, 'auto' = 'on' for cameras and "
                          "real-time playback; for a file or folder run flat out the worker is waited for, so a clip "
                          "gives the same events however fast it runs", choices=("auto", "on", "off"))
    track_min_score: float = opt(0.8, "template tracking: lowest match score (normalised correlation) that still "
                                 "counts as the same face; below it a full detection runs at once", min=0.0, max=1.0)


@dataclass
class ModelConfig:
    """The smile classifier."""
    path: str = opt("", "TFLite model file ('' = the shipped models/smile_int8.tflite)")
    num_threads: int = opt(1, "interpreter threads", min=1, max=64)
    mirror: bool = opt(False, "average p_smile of each face and its mirror image (about twice the classifier time a "
                       "face)")


@dataclass
class TriggerConfig:
    """When a smile fires the actions."""
    sensitivity: str = opt("normal", "smile shutter preset mapped to thresholds", choices=("slight", "normal", "big"))
    on_threshold: float = opt(0.0, "smoothed p_smile at or above which a face counts as smiling (0 = from sensitivity)",
                              min=0.0, max=1.0)
    off_threshold: float = opt(0.0, "smoothed p_smile below which a smiling face stops smiling (0 = from sensitivity)",
                               min=0.0, max=1.0)
    smoothing: float = opt(0.6, "weight of the newest p_smile in the per-face moving average (1 = no smoothing)",
                           min=0.01, max=1.0)
    hold_frames: int = opt(3, "frames a smile must hold before firing", min=1, max=1000)
    cooldown_s: float = opt(5.0, "seconds (stream time) after a shot before the next one", min=0.0, max=86400.0)
    policy: str = opt("largest", "which faces must smile", choices=("largest", "any", "all"))
    match_iou: float = opt(0.3, "box overlap (IoU) that matches a face to the same face in the last frame",
                           min=0.0, max=1.0)
    forget_frames: int = opt(5, "frames a face may go unseen before it is forgotten", min=0, max=1000)
    rearm: bool = opt(True, "after a shot, wait until the smile has ended before the next one (false: fire again "
                      "after each cooldown)")
    rearm_drop: float = opt(0.5, "a smile has ended when the face's smoothed p_smile falls this fraction of the way "
                            "from its smile's peak down to off_threshold and stays there rearm_frames frames (a "
                            "resting face that scores half-smiling re-arms; 0 = only below off_threshold)",
                            min=0.0, max=1.0)
    rearm_frames: int = opt(3, "frames the smoothed p_smile must stay below the rearm_drop level to end the smile",
                            min=1, max=1000)
    cooldown_across_images: bool = opt(False, "an image folder's cooldown carries over to the next image (false: "
                                       "every smiling image fires)")


@dataclass
class GpioConfig:
    """LED, shutter output and joke button (BCM pin numbers)."""
    pin_factory: str = opt("", "gpiozero pin factory ('' = automatic, 'mock' = simulated pins)",
                           choices=("", "lgpio", "rpigpio", "pigpio", "native", "mock"))
    led_enabled: bool = opt(True, "light an LED on a smile")
    led_pin: int = opt(17, "LED pin (BCM)", min=0, max=27)
    led_mode: str = opt("hold", "LED behaviour: lit while the smile holds, or one blink per shot",
                        choices=("hold", "blink"))
    led_blink_s: float = opt(0.5, "LED blink length in seconds (led_mode = 'blink')", min=0.01, max=60.0)
    shutter_enabled: bool = opt(True, "pulse a shutter pin for an external camera on a shot")
    shutter_pin: int = opt(27, "shutter output pin (BCM)", min=0, max=27)
    shutter_active_high: bool = opt(True, "shutter pulse is high (true) or low (false)")
    shutter_pulse_ms: int = opt(100, "shutter pulse length in milliseconds", min=1, max=10000)
    button_enabled: bool = opt(True, "a button that asks for a joke")
    button_pin: int = opt(22, "joke button pin (BCM), wired to ground", min=0, max=27)
    button_pull_up: bool = opt(True, "use the internal pull-up (button between pin and GND)")
    button_bounce_ms: int = opt(50, "button debounce time in milliseconds", min=0, max=2000)
    button_long_press_s: float = opt(1.0, "holding the button this long repeats the last joke", min=0.1, max=30.0)
    calibrate_hold_s: float = opt(3.0, "holding the joke button this long starts a calibration in the running loop (0 "
                                  "= never)", min=0.0, max=60.0)


@dataclass
class SpeechConfig:
    """Text-to-speech."""
    engine: str = opt("espeak-ng", "speech engine", choices=("espeak-ng", "piper", "none"))
    voice: str = opt("en-us", "espeak-ng voice")
    speed: int = opt(160, "espeak-ng speed in words per minute", min=80, max=450)
    volume: int = opt(100, "espeak-ng amplitude", min=0, max=200)
    espeak_binary: str = opt("espeak-ng", "espeak-ng executable (engine = 'espeak-ng')")
    output: str = opt("aplay", "playback: pipe the audio into aplay (alsa_device), or let espeak-ng play it itself "
                      "(piper always uses aplay)",
                      choices=("aplay", "engine"))
    piper_binary: str = opt("piper", "piper executable (engine = 'piper')")
    piper_model: str = opt("", "piper voice model .onnx (engine = 'piper')")
    alsa_device: str = opt("", "ALSA device for aplay ('' = default)")
    timeout_s: float = opt(20.0, "kill a speech engine that runs longer than this", min=1.0, max=600.0)
    max_chars: int = opt(300, "longest text spoken (longer is cut)", min=10, max=5000)


@dataclass
class JokesConfig:
    """Where dad jokes come from."""
    on_smile: bool = opt(True, "tell a joke when a smile fires")
    api_url: str = opt("https://icanhazdadjoke.com/", "joke API URL ('' = offline: cache and bundled jokes only)")
    timeout_s: float = opt(2.0, "total time allowed for one API request", min=0.1, max=30.0)
    cache_size: int = opt(200, "jokes kept in the local cache", min=0, max=100000)
    no_repeat: int = opt(20, "never repeat one of the last N jokes told", min=0, max=10000)
    prefetch: int = opt(3, "jokes fetched ahead in the background", min=0, max=100)


@dataclass
class StorageConfig:
    """Photos, events and caches."""
    state_dir: str = opt("", "where photos, events.jsonl and the joke cache go ('' = $STATE_DIRECTORY, else "
                         "~/.local/share/djsmile)")
    save_photos: bool = opt(True, "save a JPEG photo (and JSON sidecar) on each shot")
    jpeg_quality: int = opt(90, "JPEG quality of saved photos", min=1, max=100)
    max_photos: int = opt(1000, "photos kept; the oldest are deleted first (0 = no count limit)", min=0, max=10000000)
    max_photos_mb: float = opt(2048.0, "megabytes of photos kept; the oldest are deleted first (0 = no size limit)",
                               min=0.0, max=10000000.0)
    max_events_mb: float = opt(16.0, "size of events.jsonl before it is moved to events.jsonl.1 (replacing the older "
                               "one; 0 = no bound)", min=0.0, max=100000.0)
    min_free_mb: float = opt(200.0, "skip photos (with a warning) when free disk space is below this",
                             min=0.0, max=10000000.0)


@dataclass
class WebConfig:
    """Optional live view in the browser."""
    enabled: bool = opt(False, "serve the live view")
    listen: str = opt("127.0.0.1:8080", "HOST:PORT to listen on; any host but localhost needs a token")
    token: str = opt("", "access token, required when listening off localhost; when set, every request must carry it",
                     secret=True)
    stream_fps: float = opt(10.0, "most MJPEG frames per second sent to viewers", min=0.5, max=60.0)
    joke_interval_s: float = opt(3.0, "least time between two 'next joke' presses", min=0.0, max=3600.0)
    stream_quality: int = opt(70, "JPEG quality of the live stream", min=10, max=95)
    max_viewers: int = opt(4, "most live-stream viewers at once (more get 503)", min=1, max=64)
    photos_shown: int = opt(8, "thumbnails of the newest photos on the page", min=0, max=50)


@dataclass
class MqttConfig:
    """MQTT and Home Assistant discovery (every djsmile on the network shows up in Home Assistant)."""
    enabled: bool = opt(False, "publish state, events, photos and jokes to an MQTT broker; take commands from it")
    host: str = opt("localhost", "MQTT broker host name or address")
    port: int = opt(1883, "MQTT broker port (1883 plain, usually 8883 with TLS)", min=1, max=65535)
    username: str = opt("", "broker user name ('' = anonymous)")
    password: str = opt("", "broker password (never logged)", secret=True)
    tls: bool = opt(False, "connect with TLS")
    ca_file: str = opt("", "CA certificate file that signed the broker's certificate ('' = the system's CAs; needs "
                       "tls = true)")
    device_id: str = opt("", "this device's id in topics and Home Assistant: lower-case letters, digits, _ ('' = from "
                         "the host name)")
    base_topic: str = opt("", "topic prefix for this device ('' = djsmile/<device_id>)")
    discovery_prefix: str = opt("homeassistant", "Home Assistant discovery prefix ('' = no discovery messages)")
    photo: bool = opt(True, "publish the last shot's JPEG (retained) on <base_topic>/photo")
    event_queue: int = opt(100, "events kept while the broker is away; beyond this the oldest are dropped (logged)",
                           min=1, max=100000)


@dataclass
class Config:
    """The whole configuration."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    jokes: JokesConfig = field(default_factory=JokesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    web: WebConfig = field(default_factory=WebConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)

    # -- helpers ---------------------------------------------------------
    def set(self, dotted: str, value) -> None:
        """Set ``section.key`` to ``value`` with the same per-key checks as a file.

        Rules across keys run in :func:`validate` (:func:`load` calls it after all overrides).
        """
        if "." not in dotted:
            raise ConfigError(f"config key {dotted!r} must be 'section.key'")
        sec_name, key = dotted.split(".", 1)
        section = _section(self, sec_name)
        f = _field(section, sec_name, key)
        setattr(section, key, _check(f, f"{sec_name}.{key}", value))

    def to_display_dict(self) -> dict:
        """The config as a dict of sections, with secrets (web.token, mqtt.password) shown as "<set>" when set."""
        out = {}
        for sec in dataclasses.fields(self):
            obj = getattr(self, sec.name)
            out[sec.name] = {f.name: ("<set>" if f.metadata.get("secret") and getattr(obj, f.name)
                                      else getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return out

    def state_dir(self) -> Path:
        """The state folder: config, then $STATE_DIRECTORY (systemd), then the user's data dir."""
        return resolve_state_dir(self.storage.state_dir)


def resolve_state_dir(value: str = "") -> Path:
    if value:
        return Path(value).expanduser()
    env = os.environ.get("STATE_DIRECTORY")
    if env:
        return Path(env.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "djsmile"


SECTIONS = [f.name for f in fields(Config)]


def _section(cfg: Config, name: str):
    if name not in SECTIONS:
        raise ConfigError(f"unknown config section [{name}]; allowed: {', '.join(SECTIONS)}")
    return getattr(cfg, name)


def _field(section, sec_name: str, key: str):
    for f in fields(section):
        if f.name == key:
            return f
    allowed = ", ".join(f.name for f in fields(section))
    raise ConfigError(f"unknown config key {sec_name}.{key}; allowed in [{sec_name}]: {allowed}")


_TYPE_NAMES = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def _check(f, name: str, value):
    """One key's rules: type, finite number, allowed choices, range."""
    typ = {"bool": bool, "int": int, "float": float, "str": str}.get(f.type, f.type)
    meta = f.metadata
    ok = (isinstance(value, bool) if typ is bool else
          isinstance(value, int) and not isinstance(value, bool) if typ is int else
          isinstance(value, (int, float)) and not isinstance(value, bool) if typ is float else
          isinstance(value, str))
    if not ok:
        raise ConfigError(f"config key {name} = {_show(value)} is not valid: expected {_TYPE_NAMES[typ]}")
    if typ is float:
        try:
            value = float(value)
        except OverflowError:  # an integer too big for a float
            raise ConfigError(f"config key {name} = {_show(value)} is out of range: allowed "
                              f"{meta.get('min')} to {meta.get('max')}") from None
        if not math.isfinite(value):
            raise ConfigError(f"config key {name} = {value!r} is not valid: expected a finite number")
    if typ is str and "\0" in value:
        raise ConfigError(f"config key {name} = {_show(value)} is not valid: it contains a NUL character")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"config key {name} = {_show(value)} is not valid: allowed are "
                          + ", ".join(repr(c) for c in meta["choices"]))
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"config key {name} = {_show(value)} is out of range: allowed {lo} to {hi}")
    return value


def _show(value, limit: int = 60) -> str:
    """A value for a one-line message: repr, cut to ``limit`` characters."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit - 3] + "..."


def from_dict(data: dict, base: Config | None = None) -> Config:
    """Build a Config from a nested dict (as read from TOML), checking every key and every rule."""
    cfg = _apply_dict(data, base if base is not None else Config())
    validate(cfg)
    return cfg


def _apply_dict(data, cfg: Config) -> Config:
    """Set every key of a nested dict with the per-key checks (cross-field rules: :func:`validate`)."""
    if not isinstance(data, dict):
        raise ConfigError("config must be a table of sections")
    for sec_name, table in data.items():
        section = _section(cfg, sec_name)
        if not isinstance(table, dict):
            raise ConfigError(f"config [{sec_name}] must be a table of keys, got {_show(table)}")
        for key, value in table.items():
            f = _field(section, sec_name, key)
            setattr(section, key, _check(f, f"{sec_name}.{key}", value))
    return cfg


def parse_value(text: str):
    """A --set value as TOML would read it (true, 3, 0.5, "x"); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:  # not TOML (or absurdly nested): the text itself, checked as a string
        return text


def apply_sets(cfg: Config, items) -> None:
    """Apply ``--set SECTION.KEY=VALUE`` overrides (same per-key checks as a file)."""
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        cfg.set(key.strip(), parse_value(value.strip()))


# --------------------------------------------------------------------------- cross-field rules

def parse_listen(listen: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:8080"`` for IPv6) -> ``(host, port)``; ConfigError if malformed."""
    s = (listen or "").strip()
    host, sep, port_s = s.rpartition(":")
    bad = f"web.listen = {_show(listen)} is not valid"
    if not sep or not port_s.isdigit() or not port_s.isascii():
        raise ConfigError(f"{bad}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{bad}: [{host}] is not an IPv6 address") from None
    elif ":" in host or "[" in host or "]" in host:
        raise ConfigError(f"{bad}: write an IPv6 host in brackets, e.g. [::1]:8080")
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{bad}: {host!r} is not a host name or address")
    port = int(port_s)
    if port > 65535:
        raise ConfigError(f"{bad}: port must be 0 to 65535")
    return host, port


def is_loopback(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1. Anything else (0.0.0.0, names, '') is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate(cfg: Config) -> None:
    """Rules that involve several keys, or a key's syntax beyond its type.

    Runs at every load (file, ``--set`` and command-line flags applied), so
    ``djsmile config --check`` and ``djsmile run`` reject the same files.
    """
    t = cfg.trigger
    if t.on_threshold and t.off_threshold and t.off_threshold > t.on_threshold:
        raise ConfigError(f"config key trigger.off_threshold = {t.off_threshold} is not valid: "
                          f"it must not exceed trigger.on_threshold = {t.on_threshold}")
    g = cfg.gpio
    pins = [(key, getattr(g, key)) for key, on in (("led_pin", g.led_enabled), ("shutter_pin", g.shutter_enabled),
                                                    ("button_pin", g.button_enabled)) if on]
    for i, (k1, p1) in enumerate(pins):
        for k2, p2 in pins[i + 1:]:
            if p1 == p2:
                raise ConfigError(f"config keys gpio.{k1} and gpio.{k2} are both {p1}: give them different pins "
                                  f"(or switch one off with gpio.{k1.replace('_pin', '_enabled')} = false)")
    if g.calibrate_hold_s and g.calibrate_hold_s <= g.button_long_press_s:
        raise ConfigError(f"config key gpio.calibrate_hold_s = {g.calibrate_hold_s} is not valid: "
                          f"it must be longer than gpio.button_long_press_s = {g.button_long_press_s} (or 0 = off)")
    w = cfg.web
    host, _port = parse_listen(w.listen)
    if w.enabled and not is_loopback(host) and not w.token:
        raise ConfigError(f"web.listen = {w.listen!r} is reachable from other machines: "
                          "set web.token (every request must then carry it), or listen on 127.0.0.1")
    url = cfg.jokes.api_url
    if url and not (url.startswith(("http://", "https://")) and len(url.split("://", 1)[1].strip("/")) > 0
                    and not any(c.isspace() for c in url)):
        raise ConfigError(f"config key jokes.api_url = {_show(url)} is not valid: "
                          "expected an http:// or https:// URL, or '' (offline)")
    check_mqtt(cfg.mqtt)
    check_cascade(cfg.detector)
    check_detector(cfg.detector)


CASCADE_MAX_BYTES = 32 * 1024 * 1024     # OpenCV's own cascades are 0.1 to 2 MB


def check_cascade(d: "DetectorConfig") -> None:
    """``detector.cascade``, when the Haar back-end uses it: a regular file that OpenCV loads as a cascade.

    A file that is not a cascade (OpenCV raises SystemError on it) is a config error at load (78).
    A file that is not there at all is left to the detector (exit 69 at run: it may be mounted later).
    """
    if not d.cascade or d.backend != "haar":
        return
    path = Path(d.cascade).expanduser()
    bad = f"config key detector.cascade = {_show(d.cascade)} is not valid"
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    except OSError as e:
        raise ConfigError(f"{bad}: it cannot be read ({e.strerror or e})") from None
    import stat as _stat
    if not _stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{bad}: not a regular file; give a Haar cascade XML (e.g. OpenCV's "
                          "haarcascade_frontalface_default.xml), or '' for the default")
    if st.st_size > CASCADE_MAX_BYTES:
        raise ConfigError(f"{bad}: {st.st_size / 1e6:.0f} MB is too big for a Haar cascade XML "
                          f"(at most {CASCADE_MAX_BYTES // (1024 * 1024)} MB)")
    import cv2
    try:
        ok = not cv2.CascadeClassifier(str(path)).empty()
    except Exception:     # SystemError / cv2.error: not an OpenCV file, or not a cascade
        ok = False
    if not ok:
        raise ConfigError(f"{bad}: OpenCV cannot load it as a Haar cascade; give a cascade XML (e.g. "
                          "haarcascade_frontalface_default.xml), or '' for the default")


def check_detector(d: "DetectorConfig") -> None:
    """The back-end's own rules: what only Haar can do, and model files that must exist."""
    if d.tracker == "haar" and d.backend != "haar":
        raise ConfigError(f"config key detector.tracker = 'haar' needs detector.backend = 'haar' "
                          f"(it is {d.backend!r}): use tracker = 'template'")
    if 0.0 < d.blazeface_refine < 1.5:
        raise ConfigError(f"config key detector.blazeface_refine = {d.blazeface_refine:g} is not valid: 0 (off) or "
                          "1.5 to 4 face sides (a smaller square cuts into the face)")
    for key in ("blazeface_model", "yunet_model"):
        path = getattr(d, key)
        if path and key.startswith(d.backend) and not os.path.isfile(path):
            raise ConfigError(f"config key detector.{key} = {_show(path)} is not valid: no such file")
    if d.backend == "yunet" and not d.yunet_model and not _packaged("face_detection_yunet_2023mar.onnx"):
        raise ConfigError("config key detector.backend = 'yunet' needs detector.yunet_model: the YuNet model "
                          "(face_detection_yunet_2023mar.onnx) is not shipped in the package; give its path, "
                          "or use detector.backend = 'blazeface'")


def _packaged(name: str) -> bool:
    """Is ``name`` among the model files shipped in the package (``djsmile.models``)?"""
    from importlib import resources
    try:
        return resources.files("djsmile.models").joinpath(name).is_file()
    except (ModuleNotFoundError, OSError):
        return False


MQTT_ID_RE = re.compile(r"[a-z0-9_]+")
_TOPIC_LEVEL_RE = re.compile(r"[^+#/\x00]+")


def check_mqtt(m: "MqttConfig") -> None:
    """The ``[mqtt]`` rules beyond type and range (run at load, whether or not it is enabled)."""
    if not m.host.strip() or any(c.isspace() for c in m.host):
        raise ConfigError(f"config key mqtt.host = {m.host!r} is not valid: expected a host name or address")
    if m.device_id and not MQTT_ID_RE.fullmatch(m.device_id):
        raise ConfigError(f"config key mqtt.device_id = {m.device_id!r} is not valid: use lower-case letters, "
                          "digits and _ only (or '' for the host name)")
    for key in ("base_topic", "discovery_prefix"):
        value = getattr(m, key)
        if value and not all(_TOPIC_LEVEL_RE.fullmatch(level) for level in value.split("/")):
            raise ConfigError(f"config key mqtt.{key} = {value!r} is not valid: a topic like 'djsmile/porch' "
                              "(no '+', '#', empty levels, or leading/trailing '/')")
    _check_topic_lengths(m)
    if m.ca_file:
        if not m.tls:
            raise ConfigError(f"config key mqtt.ca_file = {m.ca_file!r} is only used with TLS: "
                              "set mqtt.tls = true, or remove mqtt.ca_file")
        check_ca_file(m.ca_file)


MQTT_TOPIC_MAX_BYTES = 65535             # MQTT's own limit on a topic name (a 2-byte length)
_BASE_SUFFIX = "/availability"           # the longest topic under the base topic (djsmile.mqtt.Topics)
_DISCOVERY_PARTS = ("/binary_sensor/", "/fire_shutter/config")   # the longest discovery topic around the id
_HOSTNAME_ID_MAX = 63                    # device_id '' = the host name's first label


def _check_topic_lengths(m: "MqttConfig") -> None:
    """Every topic djsmile publishes or subscribes to fits MQTT's 65535 bytes (else paho fails in its thread)."""
    dev = len(m.device_id.encode()) if m.device_id else _HOSTNAME_ID_MAX
    base = len(m.base_topic.encode()) if m.base_topic else len("djsmile/") + dev
    longest = {"base_topic" if m.base_topic else "device_id": base + len(_BASE_SUFFIX)}
    if m.discovery_prefix:
        disc = len(m.discovery_prefix.encode()) + dev + sum(map(len, _DISCOVERY_PARTS))
        longest["device_id" if dev >= len(m.discovery_prefix.encode()) else "discovery_prefix"] = max(
            disc, longest.get("device_id", 0))
    key, n = max(longest.items(), key=lambda kv: kv[1])
    if n > MQTT_TOPIC_MAX_BYTES:
        value = getattr(m, key)
        raise ConfigError(f"config key mqtt.{key} = {_show(value)} is not valid: {len(value.encode())} bytes make "
                          f"a topic of {n} bytes, more than MQTT's {MQTT_TOPIC_MAX_BYTES}; use a short name")


CA_FILE_MAX_BYTES = 4 * 1024 * 1024     # a whole system CA bundle is about 0.2 MB


def check_ca_file(value: str) -> None:
    """``mqtt.ca_file``: a regular file with at least one PEM certificate, parsed now as TLS will parse it."""
    import ssl

    from .fsutil import read_regular_file
    path = Path(value).expanduser()
    bad = f"config key mqtt.ca_file = {value!r} is not valid"
    hint = "give the broker's CA certificate (PEM), or '' for the system's CAs"
    if not path.exists():
        raise ConfigError(f"{bad}: no such file; {hint}")
    try:
        read_regular_file(path, CA_FILE_MAX_BYTES)        # a folder, a pipe or /dev/zero is refused unread
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as e:
        raise ConfigError(f"{bad}: no CA certificate in it ({e.reason or e.__class__.__name__}); {hint}") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{bad}: {getattr(e, 'strerror', None) or e}; {hint}") from None


# --------------------------------------------------------------------------- loading

def read_file(path: str | os.PathLike) -> dict:
    """A TOML file as a dict; ConfigError (one line) when it is missing, unreadable or not TOML."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found; create one with 'djsmile config --default > {p}'") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a folder, not a file") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read: {e.strerror or e}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not valid UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"config file {p} is not valid: tables or arrays nested too deeply") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as e:  # anything else tomllib trips over
        raise ConfigError(f"config file {p} is not valid TOML: {type(e).__name__}: {_show(str(e))}") from None


def load(path: str | os.PathLike | None = None, *, sets=(), adjust=None) -> Config:
    """Load a TOML config file (``None``: the defaults), apply overrides, check every rule.

    The one loader every command uses. ``sets`` are ``--set SECTION.KEY=VALUE``
    strings; ``adjust(cfg)`` applies a command's flags (through :meth:`Config.set`).
    Per-key checks run as each value is set; the cross-field rules
    (:func:`validate`) once at the end, on the config the command will use.
    """
    cfg = Config()
    if path is not None:
        data = read_file(path)
        try:
            _apply_dict(data, cfg)
        except ConfigError as e:
            raise ConfigError(f"{Path(path)}: {e}") from None
        except RecursionError:
            raise ConfigError(f"config file {path} is not valid: tables or arrays nested too deeply") from None
    apply_sets(cfg, sets or ())
    if adjust is not None:
        adjust(cfg)
    validate(cfg)
    return cfg


def toml_value(v) -> str:
    """A value as TOML text (for ``config --default`` / ``--show``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def default_toml() -> str:
    """The default configuration as a commented TOML file."""
    cfg = Config()
    out = ["# djsmile configuration. Every key is optional: delete a line to use its default.",
           "# Check a file with: djsmile config --check FILE", ""]
    for sf in fields(Config):
        section = getattr(cfg, sf.name)
        out.append(f"# {' '.join(type(section).__doc__.split())}")   # a docstring's lines joined into one
        out.append(f"[{sf.name}]")
        for f in fields(section):
            m = f.metadata
            allowed = ""
            if m.get("choices"):
                allowed = " (" + " | ".join(m["choices"]) + ")"
            elif m.get("min") is not None:
                allowed = f" ({m['min']} to {m['max']})"
            out.append(f"# {m['help']}{allowed}")
            out.append(f"{f.name} = {toml_value(getattr(section, f.name))}")
        out.append("")
    return "\n".join(out)

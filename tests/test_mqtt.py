"""MQTT and Home Assistant: a real Mosquitto broker on a free 127.0.0.1 port, started and stopped here."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from djsmile import config
from djsmile.errors import ConfigError
from helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
QUIET = ["--set", 'jokes.api_url=""', "--set", 'speech.engine="none"', "--set", 'gpio.pin_factory="mock"']
DEVICE = "testcam"
BASE = f"djsmile/{DEVICE}"
HA_KEYS = {  # what Home Assistant needs in each discovery config
    ("binary_sensor", "smiling"): {"state_topic", "value_template", "payload_on", "payload_off"},
    ("sensor", "p_smile"): {"state_topic", "value_template", "unit_of_measurement"},
    ("sensor", "shots"): {"state_topic", "value_template", "state_class"},
    ("sensor", "fps"): {"state_topic", "value_template", "entity_category"},
    ("image", "photo"): {"image_topic", "content_type"},
    ("button", "tell_joke"): {"command_topic"},
    ("button", "fire_shutter"): {"command_topic"},
    ("sensor", "last_joke"): {"state_topic"},
}

needs_mosquitto = pytest.mark.skipif(not Path(MOSQUITTO).exists(),
                                     reason="needs the mosquitto broker (apt-get install mosquitto)")


# --------------------------------------------------------------------------- a real broker
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Mosquitto with its own config file (anonymous, or a password file) and persistence in a tmp folder."""

    def __init__(self, folder: Path, users: dict | None = None, tls: dict | None = None):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {folder}/"]
        if users:
            pw = folder / "passwd"
            pw.touch()
            for user, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", str(pw), user, password], check=True,
                               capture_output=True)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            lines += [f"{k} {v}" for k, v in tls.items()]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        log = open(self.folder / "mosquitto.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()

        def up():
            assert self.proc.poll() is None, (self.folder / "mosquitto.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(up, 20, "mosquitto to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


class Listener:
    """A paho client that records every message on ``topics`` (a persistent session: clean_session=False)."""

    def __init__(self, port: int, topics, client_id: str = "test-listener"):
        import paho.mqtt.client as paho
        self.messages: list = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.c.reconnect_delay_set(0.2, 1)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.subscribed.wait(20), "the test listener could not subscribe"

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic: str) -> list:
        with self.lock:
            return [p for t, p, _r in self.messages if t == topic]

    def retained_now(self, prefix: str) -> dict:
        """Every retained message under ``prefix``: subscribe afresh, then a marker proves all arrived."""
        import paho.mqtt.client as paho
        got, lock, done = {}, threading.Lock(), threading.Event()
        marker = f"{prefix}/zz-marker-{time.monotonic_ns()}"
        c = paho.Client(paho.CallbackAPIVersion.VERSION2)

        def on_message(c, u, msg):
            if msg.topic == marker:
                done.set()
            elif msg.payload:
                with lock:
                    got[msg.topic] = msg.payload
        c.on_message = on_message
        c.on_subscribe = lambda c, *a: c.publish(marker, b"x", qos=1)
        c.on_connect = lambda c, *a: c.subscribe(prefix + "/#", qos=1)
        c.connect("127.0.0.1", self.c._port)
        c.loop_start()
        try:
            assert done.wait(20), "the marker never came back"
        finally:
            c.disconnect()
            c.loop_stop()
        return got

    def publish(self, topic: str, payload=b"") -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


# --------------------------------------------------------------------------- clips and the djsmile process
def _face_canvas(shared: Path) -> np.ndarray:
    """A real photo with one large Haar face, fitted into 640x480 (BGR)."""
    from djsmile.detectors.haar import HaarDetector
    det = HaarDetector(scale_factor=1.1, min_neighbors=5, min_face_fraction=0.2, detect_width=0)
    for p in sorted((shared / "djsmile" / "photos" / "smile").glob("*.jpg"), key=lambda p: int(p.stem))[:100]:
        img = cv2.imread(str(p))
        h, w = img.shape[:2]
        s = min(640 / w, 480 / h)
        big = cv2.resize(img, (int(w * s), int(h * s)))
        canvas = np.zeros((480, 640, 3), np.uint8)
        y0, x0 = (480 - big.shape[0]) // 2, (640 - big.shape[1]) // 2
        canvas[y0:y0 + big.shape[0], x0:x0 + big.shape[1]] = big
        if len(det.detect(cv2.cvtColor(canvas, cv2.COLOR_BGR2GRAY))) == 1:
            return canvas
    pytest.skip("no shared photo with one large face")


def make_clip(folder: Path, image: np.ndarray, frames: int) -> Path:
    """An image folder: ``image`` (one file) linked ``frames`` times."""
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder.parent / f"{folder.name}.jpg"), image)
    for i in range(frames):
        os.symlink(folder.parent / f"{folder.name}.jpg", folder / f"{i:05d}.jpg")
    return folder


# every face smiles (tiny thresholds), a shot each 0.5 s of stream time (the cooldown carries across the
# folder's images, which are one scene here: the same photo linked again and again)
SHOOT_ALL = ["--set", "trigger.on_threshold=0.001", "--set", "trigger.off_threshold=0.0005",
             "--set", "trigger.hold_frames=1", "--set", "trigger.cooldown_s=0.5", "--set", "trigger.rearm=false",
             "--set", "trigger.cooldown_across_images=true"]


def djsmile(tmp_path: Path, port: int, source: Path, *extra, realtime=False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    cmd = [PY, "-m", "djsmile", "run", "--source", str(source), "--state-dir", str(tmp_path / "state"),
           "--mqtt", f"127.0.0.1:{port}", "--set", f'mqtt.device_id="{DEVICE}"', *QUIET,
           "--realtime" if realtime else "--no-realtime", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        _out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def events_jsonl(tmp_path: Path) -> list[dict]:
    p = tmp_path / "state" / "events.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines()] if p.exists() else []


# --------------------------------------------------------------------------- config (no broker)
@pytest.mark.parametrize("toml, words", [
    ("[mqtt]\nport = 0\n", ["mqtt.port", "0", "1 to 65535"]),
    ("[mqtt]\nport = 70000\n", ["mqtt.port", "70000"]),
    ("[mqtt]\ntls = true\nca_file = '/no/such/ca.pem'\n", ["mqtt.ca_file", "/no/such/ca.pem", "no such file"]),
    ("[mqtt]\nca_file = '/etc/hostname'\n", ["mqtt.ca_file", "mqtt.tls = true"]),
    ("[mqtt]\ndevice_id = 'Porch Cam'\n", ["mqtt.device_id", "'Porch Cam'", "lower-case"]),
    ("[mqtt]\nbase_topic = 'djsmile/+/x'\n", ["mqtt.base_topic", "'+'"]),
    ("[mqtt]\nbase_topic = 'djsmile/'\n", ["mqtt.base_topic"]),
    ("[mqtt]\nhost = ''\n", ["mqtt.host"]),
    ("[mqtt]\nusername = 7\n", ["mqtt.username", "string"]),
])
def test_bad_mqtt_config_is_78_naming_the_key(tmp_path, toml, words):
    f = tmp_path / "bad.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError) as e:
        config.load(f)
    from djsmile.cli import exit_code_for
    assert exit_code_for(e.value) == 78
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("toml, key", [
    ("[mqtt]\ndevice_id = '" + "a" * 70000 + "'\n", "mqtt.device_id"),
    ("[mqtt]\nbase_topic = '" + "b" * 70000 + "'\n", "mqtt.base_topic"),
    ("[mqtt]\ndiscovery_prefix = '" + "h" * 40000 + "'\ndevice_id = '" + "d" * 30000 + "'\n", "mqtt.discovery_prefix"),
])
def test_topics_longer_than_mqtt_allows_are_78_at_load(tmp_path, toml, key, capfd):
    from djsmile import cli
    f = tmp_path / "c.toml"
    f.write_text(toml)
    assert cli.main(["config", "--check", str(f)]) == 78
    err = capfd.readouterr().err
    assert key in err and "65535" in err and len(err.strip().splitlines()) == 1, err[:500]


def test_the_longest_allowed_device_id_makes_topics_mqtt_accepts():
    from djsmile.mqtt import ENTITIES, Topics
    limit = config.MQTT_TOPIC_MAX_BYTES
    longest = None
    for n in (60000, 65000, 65500):
        m = config.Config().mqtt
        m.device_id = "a" * n
        try:
            config.check_mqtt(m)
        except ConfigError:
            continue
        longest = Topics(m)
    assert longest is not None
    t = longest
    names = [t.availability, t.state, t.event, t.photo, t.joke, t.joke_tell, t.shutter_fire,
             *(t.discovery(c, o) for c, o in ENTITIES)]
    assert max(len(n.encode()) for n in names) <= limit


def test_config_check_names_a_missing_tls_ca_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\nenabled = true\ntls = true\nca_file = 'missing-ca.pem'\n")
    r = subprocess.run([PY, "-m", "djsmile", "config", "--check", str(f)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 78 and "mqtt.ca_file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


NOT_A_CA = {
    "text": lambda p: p.write_text("this is not a certificate\n"),
    "empty": lambda p: p.write_bytes(b""),
    "random bytes": lambda p: p.write_bytes(bytes(range(256)) * 8),
    "a PEM that is no certificate": lambda p: p.write_text(
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"),
    "a folder": lambda p: p.mkdir(),
    "a link to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
}


@pytest.mark.parametrize("what", list(NOT_A_CA))
def test_a_tls_ca_file_that_is_not_a_certificate_is_78_at_load_for_check_and_run(tmp_path, what, capfd):
    from djsmile import cli
    ca = tmp_path / "ca.pem"
    NOT_A_CA[what](ca)
    f = tmp_path / "c.toml"
    f.write_text(f"[mqtt]\nenabled = true\ntls = true\nca_file = '{ca}'\n[jokes]\napi_url = ''\n")
    rc_check = cli.main(["config", "--check", str(f)])
    rc_run = cli.main(["run", "--config", str(f), "--source", str(tmp_path / "none.mp4"), "--max-frames", "1"])
    err = capfd.readouterr().err
    assert rc_check == 78 and rc_run == 78, err
    lines = [ln for ln in err.splitlines() if "mqtt.ca_file" in ln]
    assert len(lines) == 2 and all(str(ca) in ln and "PEM" in ln for ln in lines), err
    assert "Traceback" not in err


@pytest.mark.skipif(not Path("/etc/ssl/certs/ca-certificates.crt").is_file(), reason="no system CA bundle")
def test_a_real_ca_bundle_passes_the_load_check(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\ntls = true\nca_file = '/etc/ssl/certs/ca-certificates.crt'\n")
    assert config.load(f).mqtt.ca_file == "/etc/ssl/certs/ca-certificates.crt"


def test_default_config_documents_the_mqtt_section():
    text = config.default_toml()
    section = text[text.index("[mqtt]"):]
    for key in ("enabled", "host", "port", "username", "password", "tls", "ca_file", "device_id",
                "base_topic", "discovery_prefix", "photo"):
        assert f"\n{key} = " in section
    m = config.Config().mqtt
    assert (m.enabled, m.host, m.port, m.username, m.password, m.tls, m.device_id, m.base_topic,
            m.discovery_prefix, m.photo) == (False, "localhost", 1883, "", "", False, "", "", "homeassistant", True)


@pytest.mark.parametrize("flag, host, port", [("broker.lan", "broker.lan", 1883), ("10.0.0.2:1884", "10.0.0.2", 1884),
                                              ("[::1]:8883", "::1", 8883)])
def test_run_mqtt_flag_turns_it_on(flag, host, port):
    from djsmile.cli import build_parser, config_for
    argv = ["run", "--mqtt", flag]
    args = build_parser(argv).parse_args(argv)
    cfg = config_for(args)
    assert (cfg.mqtt.enabled, cfg.mqtt.host, cfg.mqtt.port) == (True, host, port)


def test_device_id_from_the_hostname_and_default_topics():
    from djsmile.mqtt import Topics, device_id_from_hostname
    assert device_id_from_hostname("Porch-Pi.local") == "porch_pi"
    assert device_id_from_hostname("---") == "djsmile"
    t = Topics(config.Config().mqtt, hostname="Kitchen Pi")
    assert t.base == "djsmile/kitchen_pi" and t.availability == "djsmile/kitchen_pi/availability"
    assert t.discovery("sensor", "shots") == "homeassistant/sensor/kitchen_pi/shots/config"


def test_events_beyond_the_bound_drop_the_oldest_and_say_so(caplog):
    from djsmile.mqtt import MqttSink
    m = config.Config().mqtt
    m.event_queue = 3
    sink = MqttSink(m, version="t", hostname="x")  # never started: the broker is "away"
    for i in range(5):
        sink.event({"frame": i, "photo": None})
    assert [e["frame"] for e in sink._events] == [2, 3, 4]
    assert sink.events_dropped == 2
    assert "dropped the oldest; 2 dropped so far" in caplog.text


# --------------------------------------------------------------------------- with a real broker
@pytest.mark.slow
@needs_mosquitto
def test_discovery_configs_arrive_as_home_assistant_expects_and_forget_clears_them(tmp_path, broker):
    clip = make_clip(tmp_path / "clip", np.full((120, 160, 3), 90, np.uint8), 5)
    rc, err = finish(djsmile(tmp_path, broker.port, clip))
    assert rc == 0, err[-3000:]
    listener = Listener(broker.port, ["#"])
    try:
        configs = listener.retained_now("homeassistant")
        device_blocks = []
        for (component, object_id), keys in HA_KEYS.items():
            topic = f"homeassistant/{component}/{DEVICE}/{object_id}/config"
            assert topic in configs, f"no discovery config on {topic}; got {sorted(configs)}"
            conf = json.loads(configs[topic])
            assert keys <= set(conf), (topic, keys - set(conf))
            assert conf["availability_topic"] == f"{BASE}/availability" and conf["unique_id"] and conf["name"]
            device_blocks.append(conf["device"])
        assert len(configs) == len(HA_KEYS)
        dev = device_blocks[0]
        assert all(d == dev for d in device_blocks)
        assert dev["model"] == "djsmile" and dev["identifiers"] and dev["name"] and dev["sw_version"]
        assert len({json.loads(c)["unique_id"] for c in configs.values()}) == len(HA_KEYS)
        shots = json.loads(configs[f"homeassistant/sensor/{DEVICE}/shots/config"])
        assert shots["state_class"] == "total_increasing"
        assert json.loads(configs[f"homeassistant/sensor/{DEVICE}/fps/config"])["entity_category"] == "diagnostic"
        assert json.loads(configs[f"homeassistant/sensor/{DEVICE}/p_smile/config"])["unit_of_measurement"] == "%"
        assert json.loads(configs[f"homeassistant/button/{DEVICE}/tell_joke/config"])["command_topic"] == \
            f"{BASE}/joke/tell"
        mine = listener.retained_now(BASE)
        assert mine[f"{BASE}/availability"] == b"offline"  # a clean stop says so
        state = json.loads(mine[f"{BASE}/state"])
        assert set(state) == {"smiling", "p_smile", "faces", "fps", "shots", "last_shot"}
        assert state["faces"] == 0 and state["p_smile"] is None and state["smiling"] is False

        # the photo turned off: its image entity goes away, the others stay
        rc, err = finish(djsmile(tmp_path, broker.port, clip, "--set", "mqtt.photo=false"))
        assert rc == 0, err[-3000:]
        left = listener.retained_now("homeassistant")
        assert set(left) == set(configs) - {f"homeassistant/image/{DEVICE}/photo/config"}

        r = subprocess.run([PY, "-m", "djsmile", "mqtt", "--forget", "--mqtt", f"127.0.0.1:{broker.port}",
                            "--set", f'mqtt.device_id="{DEVICE}"'], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert listener.retained_now("homeassistant") == {}
        assert listener.retained_now(BASE) == {}
    finally:
        listener.close()


@pytest.mark.slow
@needs_mosquitto
def test_events_arrive_for_the_shots_of_a_real_clip(tmp_path, broker, shared_datasets):
    clip = make_clip(tmp_path / "clip", _face_canvas(shared_datasets), 90)  # 3 s of stream
    listener = Listener(broker.port, [f"{BASE}/#"])
    try:
        # played at its own rate, as a camera would: run flat out on a loaded machine, six shots in 0.3 s could
        # outrun the photo writer (its queue drops a photo by design) and the last event had no photo
        rc, err = finish(djsmile(tmp_path, broker.port, clip, *SHOOT_ALL, realtime=True))
        assert rc == 0, err[-3000:]
        written = events_jsonl(tmp_path)
        assert len(written) >= 3, err[-3000:]
        got = wait_until(lambda: len(listener.on(f"{BASE}/event")) >= len(written) and listener.on(f"{BASE}/event"),
                         30, "the events")
        assert [json.loads(p) for p in got] == written
        assert all(set(e) >= {"time", "frame", "faces", "photo"} and e["faces"] for e in written)
        photo = listener.on(f"{BASE}/photo")[-1]
        assert photo[:2] == b"\xff\xd8" and photo == Path(written[-1]["photo"]).read_bytes()
        state = json.loads(listener.retained_now(BASE)[f"{BASE}/state"])
        assert state["shots"] == len(written) and state["faces"] == 1 and state["last_shot"]
        assert 0.0 <= state["p_smile"] <= 1.0
    finally:
        listener.close()


@pytest.mark.slow
@needs_mosquitto
def test_commands_tell_a_joke_and_fire_the_shutter_and_the_last_will_says_offline(tmp_path, broker):
    clip = make_clip(tmp_path / "clip", np.full((240, 320, 3), 90, np.uint8), 3000)  # no face: no smile
    listener = Listener(broker.port, [f"{BASE}/#"])
    proc = djsmile(tmp_path, broker.port, clip, realtime=True)
    try:
        wait_until(lambda: b"online" in listener.on(f"{BASE}/availability"), 60, "availability online")
        listener.publish(f"{BASE}/joke/tell", b"PRESS")
        joke = wait_until(lambda: listener.on(f"{BASE}/joke"), 30, "a joke on the joke topic")[0]
        assert len(joke.decode()) > 10

        listener.publish(f"{BASE}/shutter/fire", b"PRESS")
        ev = json.loads(wait_until(lambda: listener.on(f"{BASE}/event"), 30, "the manual shot's event")[0])
        assert ev["manual"] is True and ev["faces"] == []
        assert Path(ev["photo"]).is_file()
        assert json.loads(Path(ev["photo"]).with_suffix(".json").read_text())["state"] == "manual"
        assert events_jsonl(tmp_path) == [ev]
        wait_until(lambda: listener.on(f"{BASE}/photo"), 30, "the photo")

        with listener.lock:
            listener.messages.clear()
        proc.send_signal(signal.SIGKILL)  # a pulled plug: only the broker's last will can say so
        proc.wait(30)
        wait_until(lambda: b"offline" in listener.on(f"{BASE}/availability"), 60, "availability offline")
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
        listener.close()
    assert "manual shot" in err and "joke (" in err


@pytest.mark.slow
@needs_mosquitto
def test_retained_commands_are_ignored_at_start_and_after_a_broker_restart(tmp_path, broker):
    import paho.mqtt.client as paho
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-retainer")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    for topic in (f"{BASE}/shutter/fire", f"{BASE}/joke/tell"):   # left on the broker by some other client
        pub.publish(topic, b"PRESS", qos=1, retain=True).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    clip = make_clip(tmp_path / "clip", np.full((240, 320, 3), 90, np.uint8), 3000)  # no face: no smile
    listener = Listener(broker.port, [f"{BASE}/#"])
    proc = djsmile(tmp_path, broker.port, clip, "--log-level", "DEBUG", realtime=True)
    try:
        wait_until(lambda: b"online" in listener.on(f"{BASE}/availability"), 60, "availability online")
        time.sleep(2.0)
        broker.stop()                       # the retained commands are sent again at the reconnect
        broker.start()
        with listener.lock:
            listener.messages.clear()
        wait_until(lambda: b"online" in listener.on(f"{BASE}/availability"), 60, "online after the restart")
        time.sleep(2.0)
        assert events_jsonl(tmp_path) == [], "a retained shutter/fire fired"
        assert listener.on(f"{BASE}/joke") == [], "a retained joke/tell told a joke"
        listener.publish(f"{BASE}/shutter/fire", b"PRESS")         # a real press still works
        wait_until(lambda: events_jsonl(tmp_path), 30, "the manual shot of a real press")
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        listener.close()
    assert rc == 0, err[-3000:]
    assert len(events_jsonl(tmp_path)) == 1
    ignored = [ln for ln in err.splitlines() if "retained" in ln and "ignored" in ln]
    assert len(ignored) == 4 and all("DEBUG" in ln for ln in ignored), err[-3000:]  # 2 topics x 2 connects


@pytest.mark.slow
@needs_mosquitto
def test_a_command_flood_is_a_few_log_lines_per_topic_and_says_how_many_were_suppressed(tmp_path, broker):
    import paho.mqtt.client as paho
    clip = make_clip(tmp_path / "clip", np.full((240, 320, 3), 90, np.uint8), 3000)  # no face: no smile
    listener = Listener(broker.port, [f"{BASE}/availability"])
    proc = djsmile(tmp_path, broker.port, clip, realtime=True)
    flood = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-flood")
    try:
        wait_until(lambda: b"online" in listener.on(f"{BASE}/availability"), 60, "availability online")
        flood.connect("127.0.0.1", broker.port)
        flood.loop_start()
        for i in range(1000):
            flood.publish(f"{BASE}/joke/tell", b"PRESS", qos=0)
            if i % 5 == 0:
                flood.publish(f"{BASE}/shutter/fire", b"PRESS", qos=0)
        flood.publish(f"{BASE}/zz", b"end", qos=1).wait_for_publish(30)
        time.sleep(5.0)             # the flood is handled (paho's thread takes them in order)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc)
    finally:
        flood.disconnect()
        flood.loop_stop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        listener.close()
    assert rc == 0, err[-3000:]
    lines = err.splitlines()
    assert len(lines) < 80, (f"{len(lines)} log lines for 1,000 joke/tell and 200 shutter/fire:\n"
                             + "\n".join(lines[-40:]))
    suppressed = [ln for ln in lines if "more like this suppressed" in ln]
    assert any("joke/tell" in ln for ln in suppressed) and any("shutter/fire" in ln for ln in suppressed), err[-3000:]
    assert events_jsonl(tmp_path), "no manual shot at all"


@pytest.mark.slow
@needs_mosquitto
def test_a_broker_restart_mid_run_loses_no_event(tmp_path, broker, shared_datasets):
    clip = make_clip(tmp_path / "clip", _face_canvas(shared_datasets), 1800)  # 60 s in real time, a shot each 0.5 s
    listener = Listener(broker.port, [f"{BASE}/event"])

    def received():  # QoS 1 is at least once: a resent event may come twice
        return {e["frame"]: e for e in map(json.loads, listener.on(f"{BASE}/event"))}

    proc = djsmile(tmp_path, broker.port, clip, *SHOOT_ALL, realtime=True)
    try:
        wait_until(lambda: listener.on(f"{BASE}/event"), 60, "the first event")
        broker.stop()
        n = len(events_jsonl(tmp_path))
        wait_until(lambda: len(events_jsonl(tmp_path)) >= n + 3, 60, "shots while the broker is away")
        broker.start()
        during = [e["frame"] for e in events_jsonl(tmp_path)]
        wait_until(lambda: set(during) <= set(received()), 90, "the events kept while the broker was away")
        proc.send_signal(signal.SIGTERM)
        rc, err = finish(proc)
        assert rc == 0, err[-3000:]
        written = events_jsonl(tmp_path)
        wait_until(lambda: len(received()) >= len(written), 60, f"all {len(written)} events")
        assert sorted(received().values(), key=lambda e: e["frame"]) == written
        assert "lost the broker" in err and err.count("connected to 127.0.0.1") >= 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        listener.close()


@pytest.mark.slow
@needs_mosquitto
def test_refused_credentials_are_one_line_and_the_run_goes_on(tmp_path):
    b = Broker(tmp_path / "broker", users={"djsmile": "right-password"}).start()
    try:
        clip = make_clip(tmp_path / "clip", np.full((120, 160, 3), 90, np.uint8), 120)  # 4 s in real time
        rc, err = finish(djsmile(tmp_path, b.port, clip, "--set", 'mqtt.username="djsmile"',
                                 "--set", 'mqtt.password="wrong-secret-pw"', realtime=True))
    finally:
        b.stop()
    assert rc == 0, err[-3000:]
    refused = [ln for ln in err.splitlines() if "djsmile.mqtt" in ln and "refused" in ln]
    assert len(refused) == 1 and "mqtt.password" in refused[0], err[-3000:]
    assert "stopped after 120 frames" in err
    assert "wrong-secret-pw" not in err and "Traceback" not in err


@pytest.mark.slow
@needs_mosquitto
@pytest.mark.skipif(not shutil.which("openssl"), reason="needs openssl to make a test CA")
def test_tls_with_a_ca_file_connects_and_a_wrong_ca_is_refused(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()

    def ssl_cmd(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=djsmile test CA")
    ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
            "-days", "2", "-subj", "/CN=another CA")
    ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl_cmd("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.crt", "-days", "2", "-extfile", "san.ext")
    b = Broker(tmp_path / "broker", tls={"cafile": d / "ca.crt", "certfile": d / "srv.crt",
                                         "keyfile": d / "srv.key"}).start()

    def forget(ca):
        return subprocess.run([PY, "-m", "djsmile", "mqtt", "--forget", "--mqtt", f"127.0.0.1:{b.port}",
                               "--set", "mqtt.tls=true", "--set", f'mqtt.ca_file="{ca}"'],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    try:
        ok = forget(d / "ca.crt")
        bad = forget(d / "other.crt")
    finally:
        b.stop()
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 69 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "mqtt.ca_file" in bad.stderr and "Traceback" not in bad.stderr


def test_the_state_says_what_the_trigger_decided_for_a_group():
    """policy "all": a straight face the detector missed for one frame still counts: the page's banner and the
    trigger say "watching", so the MQTT state must not say smiling (it recomputed from the faces seen: True)."""
    from djsmile.config import TriggerConfig
    from djsmile.mqtt import state_payload
    from djsmile.trigger import Trigger

    trig = Trigger(TriggerConfig(policy="all", hold_frames=3, cooldown_s=0.0), 0.5)
    big, small = (100, 80, 120, 120), (400, 100, 60, 60)
    for i in range(5):
        trig.update(i, i / 30, [big, small], [0.05, 0.95])
    res = trig.update(5, 5 / 30, [small], [0.95])          # the big face missed for this frame
    state = state_payload(res, fps=30.0, shots=0, last_shot=None)
    assert state["smiling"] is False and res.state == "watching"
    assert state["faces"] == 1 and state["p_smile"] == 0.95

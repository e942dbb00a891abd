"""MQTT sink: state, events, photos and jokes to a broker, Home Assistant discovery, two commands.

Built on paho-mqtt 2.x; the shape follows Frigate's MQTT integration.
Topics under ``<base_topic>`` (default ``djsmile/<device_id>``):

==================  ======================================================================
``availability``    ``online`` / ``offline``, retained; ``offline`` is also the last will
``state``           JSON, retained, at most 2 a second: ``smiling``, ``p_smile``, ``faces``,
                    ``fps``, ``shots``, ``last_shot``
``event``           one JSON message per shot (the ``events.jsonl`` line), QoS 1
``photo``           the last shot's JPEG, retained (``mqtt.photo``)
``joke``            the text of each joke told
``joke/tell``       command: tell a new joke (any payload)
``shutter/fire``    command: fire the shutter and save a photo now (a manual shot)
==================  ======================================================================

Discovery configs (retained) go to
``<discovery_prefix>/<component>/<device_id>/<object_id>/config``, all with
one shared ``device`` block and the availability topic.

The frame loop never waits on the network: :meth:`MqttSink.frame`
only stores the newest state (older ones are dropped), events are queued
(bounded: beyond ``mqtt.event_queue`` the oldest are dropped and counted
in the log), and one worker thread publishes them while paho's own thread
keeps the connection, reconnecting with backoff. Commands arrive on paho's
thread and are handed to the callbacks the service gives (which only set a
flag or queue a request). Credentials are never logged.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import socket
import ssl
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Optional

import paho.mqtt.client as paho

from .errors import ConfigError, UnavailableError
from .logutil import LogLimiter
from .sinks import Sink

log = logging.getLogger(__name__)

STATE_MIN_INTERVAL_S = 0.5     # at most 2 state messages a second
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
KEEPALIVE_S = 30
WORKER_TICK_S = 0.1            # how often the worker looks at the newest state
HA_STATE_MAX = 255             # Home Assistant's longest entity state

#: (component, object_id) of every discovery config djsmile publishes
ENTITIES = (("binary_sensor", "smiling"), ("sensor", "p_smile"), ("sensor", "shots"), ("sensor", "fps"),
            ("image", "photo"), ("button", "tell_joke"), ("button", "fire_shutter"), ("sensor", "last_joke"))


class MqttError(UnavailableError):
    """The broker cannot be reached or refused us (``djsmile mqtt``). Exit 69."""


def device_id_from_hostname(hostname: str) -> str:
    """``Porch-Pi.local`` -> ``porch_pi``: lower case, ``[a-z0-9_]`` only, never empty."""
    name = hostname.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9_]+", "_", name).strip("_")
    return name or "djsmile"


class Topics:
    """Every topic name of one device, from its ``[mqtt]`` section."""

    def __init__(self, mcfg, hostname: Optional[str] = None):
        self.device_id = mcfg.device_id or device_id_from_hostname(hostname or socket.gethostname())
        self.base = mcfg.base_topic or f"djsmile/{self.device_id}"
        self.discovery_prefix = mcfg.discovery_prefix
        self.availability = f"{self.base}/availability"
        self.state = f"{self.base}/state"
        self.event = f"{self.base}/event"
        self.photo = f"{self.base}/photo"
        self.joke = f"{self.base}/joke"
        self.joke_tell = f"{self.base}/joke/tell"
        self.shutter_fire = f"{self.base}/shutter/fire"

    def discovery(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.device_id}/{object_id}/config"


def discovery_configs(topics: Topics, version: str, *, photo: bool = True) -> dict[str, dict]:
    """Home Assistant discovery: config topic -> payload, all sharing one ``device`` block."""
    t = topics
    device = {"identifiers": [f"djsmile_{t.device_id}"], "name": f"djsmile {t.device_id}",
              "model": "djsmile", "manufacturer": "djsmile", "sw_version": version}
    common = {"availability_topic": t.availability, "payload_available": "online",
              "payload_not_available": "offline", "device": device,
              "origin": {"name": "djsmile", "sw_version": version}}
    ents = {
        ("binary_sensor", "smiling"): {
            "name": "Smiling", "state_topic": t.state, "payload_on": "ON", "payload_off": "OFF",
            "value_template": "{{ 'ON' if value_json.smiling else 'OFF' }}", "icon": "mdi:emoticon-happy"},
        ("sensor", "p_smile"): {
            "name": "Smile probability", "state_topic": t.state, "unit_of_measurement": "%",
            "state_class": "measurement", "icon": "mdi:emoticon-outline",
            "value_template": "{{ (value_json.p_smile * 100) | round(0) if value_json.p_smile is not none "
                              "else 'None' }}"},
        ("sensor", "shots"): {
            "name": "Shots", "state_topic": t.state, "state_class": "total_increasing",
            "value_template": "{{ value_json.shots }}", "icon": "mdi:camera-iris"},
        ("sensor", "fps"): {
            "name": "Frame rate", "state_topic": t.state, "unit_of_measurement": "fps",
            "state_class": "measurement", "entity_category": "diagnostic",
            "value_template": "{{ value_json.fps }}", "icon": "mdi:speedometer"},
        ("image", "photo"): {
            "name": "Last photo", "image_topic": t.photo, "content_type": "image/jpeg"},
        ("button", "tell_joke"): {
            "name": "Tell a joke", "command_topic": t.joke_tell, "payload_press": "PRESS",
            "icon": "mdi:microphone-message"},
        ("button", "fire_shutter"): {
            "name": "Fire shutter", "command_topic": t.shutter_fire, "payload_press": "PRESS",
            "icon": "mdi:camera"},
        ("sensor", "last_joke"): {
            "name": "Last joke", "state_topic": t.joke, "icon": "mdi:comment-quote",
            "value_template": "{{ value[:%d] }}" % HA_STATE_MAX},
    }
    out = {}
    for (component, object_id), conf in ents.items():
        if component == "image" and not photo:
            continue
        payload = dict(conf, unique_id=f"djsmile_{t.device_id}_{object_id}", **common)
        out[t.discovery(component, object_id)] = payload
    return out


def state_payload(result, fps: float, shots: int, last_shot: Optional[float]) -> dict:
    """The ``state`` JSON from one frame's trigger result (its ``smiling`` and the policy's ``face``)
    and the loop's counters."""
    face = result.face
    return {"smiling": bool(result.smiling),
            "p_smile": round(float(face.p_smile), 3) if face is not None else None,
            "faces": len(result.faces), "fps": round(float(fps), 1), "shots": int(shots),
            "last_shot": (datetime.fromtimestamp(last_shot).astimezone().isoformat(timespec="seconds")
                          if last_shot else None)}


def _new_client(mcfg, client_id: str, *, will: Optional[tuple] = None) -> paho.Client:
    """A paho client with the section's credentials and TLS (never logged)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    if mcfg.username or mcfg.password:
        c.username_pw_set(mcfg.username or None, mcfg.password or None)
    if mcfg.tls:
        try:
            c.tls_set(ca_certs=str(Path(mcfg.ca_file).expanduser()) if mcfg.ca_file else None)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise ConfigError(f"config key mqtt.ca_file = {mcfg.ca_file!r} is not valid: not a CA certificate "
                              f"({e.__class__.__name__}); give the broker's CA certificate in PEM") from None
    if will is not None:
        c.will_set(*will)
    c.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    return c


class MqttSink(Sink):
    """Publishes what the loop does; hands the two commands to ``on_joke_tell`` / ``on_shutter_fire``.

    A :class:`~djsmile.sinks.Sink`: ``frame``, ``event`` and ``joke`` never block. ``start()``
    connects in the background (a broker that is away or refuses us is
    logged once; the loop goes on). ``close()`` publishes ``offline``.
    """

    name = "MQTT"

    def __init__(self, mcfg, *, version: str,
                 on_joke_tell: Optional[Callable[[], object]] = None,
                 on_shutter_fire: Optional[Callable[[], object]] = None,
                 hostname: Optional[str] = None):
        self.cfg = mcfg
        self.version = version
        self.topics = Topics(mcfg, hostname)
        self.on_joke_tell = on_joke_tell
        self.on_shutter_fire = on_shutter_fire
        self._logs = LogLimiter(log)     # commands come from outside: a few lines per topic
        self.events_dropped = 0
        self.events_sent = 0
        self.states_sent = 0
        self._frame = None                  # newest (result, fps, shots, last_shot); older ones are dropped
        self._frame_seq = 0
        self._events: collections.deque = collections.deque()
        self._jokes: collections.deque = collections.deque(maxlen=5)
        self._photo: Optional[str] = None   # path of the newest photo not yet published
        self._last_photo: Optional[bytes] = None
        self._last_state: Optional[bytes] = None
        self._cond = threading.Condition()
        self._connected = False
        self._announce = False
        self._refused_logged = False
        self._unreachable_logged = False
        self._tried = False                 # the first connection attempt has ended (either way)
        self._stop = False
        self._started = False
        self._thread: Optional[threading.Thread] = None
        self.client = _new_client(mcfg, f"djsmile-{self.topics.device_id}",
                                  will=(self.topics.availability, "offline", 1, True))
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.message_callback_add(self.topics.joke_tell, self._on_joke_tell)
        self.client.message_callback_add(self.topics.shutter_fire, self._on_shutter_fire)

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the loop's side (never blocks) -------------------------------------------
    def frame(self, frame, result, stats) -> None:
        """The newest frame's state (only the newest is kept; the worker sends at most 2 a second)."""
        self._frame = (result, stats.fps, stats.shots, stats.last_shot_wall)
        self._frame_seq += 1

    def event(self, event: dict) -> None:
        """One shot's event line (called by the photo writer after the line is written)."""
        with self._cond:
            if len(self._events) >= self.cfg.event_queue:
                self._events.popleft()
                self.events_dropped += 1
                log.warning("MQTT: %d event(s) waiting for the broker (mqtt.event_queue = %d): dropped the "
                            "oldest; %d dropped so far", len(self._events) + 1, self.cfg.event_queue,
                            self.events_dropped)
            self._events.append(event)
            if self.cfg.photo and event.get("photo"):
                self._photo = event["photo"]
            self._cond.notify()

    def joke(self, text: str) -> None:
        """A joke told (the teller's thread)."""
        with self._cond:
            self._jokes.append(text)
            self._cond.notify()

    # -- life cycle --------------------------------------------------------------
    def start(self) -> "MqttSink":
        log.info("MQTT: connecting to %s%s as %s (topics under %s/, discovery %s)", self.where,
                 " with TLS" if self.cfg.tls else "", self.topics.device_id, self.topics.base,
                 self.topics.discovery_prefix or "off")
        self._started = True
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._work, name="djsmile-mqtt", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 1.0) -> None:
        """Send what is queued (within ``timeout``), publish ``offline``, disconnect."""
        deadline = time.monotonic() + timeout
        with self._cond:  # a short run: let the first connection attempt finish, so its news goes out
            if self._started:
                self._cond.wait_for(lambda: self._tried, max(0.0, deadline - time.monotonic()))
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._connected:
            info = self.client.publish(self.topics.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        if self._events:
            log.warning("MQTT: %d event(s) not sent before exit", len(self._events))
        self._logs.flush()
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho's thread -----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._note_tried()
            if not self._refused_logged:
                self._refused_logged = True
                hint = ("check mqtt.username and mqtt.password" if "auth" in str(reason_code).lower()
                        or "password" in str(reason_code).lower() else "check the [mqtt] settings")
                log.error("MQTT: broker %s refused the connection (%s); %s. djsmile runs on without MQTT "
                          "and keeps retrying", self.where, reason_code, hint)
            return
        log.info("MQTT: connected to %s", self.where)
        self._refused_logged = self._unreachable_logged = False
        client.subscribe([(self.topics.joke_tell, 1), (self.topics.shutter_fire, 1)])
        with self._cond:
            self._connected = True
            self._announce = True
            self._tried = True
            self._cond.notify_all()

    def _note_tried(self) -> None:
        with self._cond:
            self._tried = True
            self._cond.notify_all()

    def _on_connect_fail(self, client, userdata):
        self._note_tried()
        if not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning("MQTT: broker %s unreachable%s; retrying in the background (the loop goes on)",
                        self.where, " or its TLS certificate not accepted (mqtt.ca_file)" if self.cfg.tls else "")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            was, self._connected = self._connected, False
        if was and not self._stop:
            log.warning("MQTT: lost the broker %s (%s); reconnecting with backoff", self.where, reason_code)

    def _retained(self, msg) -> bool:
        """A retained command is an old press the broker keeps and sends at every (re)connect: ignored."""
        if msg.retain:
            self._logs.log((msg.topic, "retained"), logging.DEBUG, "MQTT: %s: ignored a retained command "
                           "(commands act only when pressed; clear it with an empty retained message)", msg.topic)
        return bool(msg.retain)

    def _on_joke_tell(self, client, userdata, msg):
        if self._retained(msg):
            return
        self._logs.log(msg.topic, logging.INFO, "MQTT: %s: telling a joke", msg.topic)
        if self.on_joke_tell is not None:
            try:
                self.on_joke_tell()
            except Exception:
                log.exception("MQTT: joke/tell failed")

    def _on_shutter_fire(self, client, userdata, msg):
        if self._retained(msg):
            return
        self._logs.log(msg.topic, logging.INFO, "MQTT: %s: manual shot requested", msg.topic)
        if self.on_shutter_fire is not None:
            try:
                self.on_shutter_fire()
            except Exception:
                log.exception("MQTT: shutter/fire failed")

    # -- the worker thread -------------------------------------------------------------
    def _publish(self, topic: str, payload, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            log.debug("MQTT: publish to %s: %s", topic, paho.error_string(info.rc))

    def _announce_now(self) -> None:
        """On every (re)connect: online, discovery, and the retained state and photo again."""
        t = self.topics
        self._publish(t.availability, "online", qos=1, retain=True)
        if t.discovery_prefix:
            configs = discovery_configs(t, self.version, photo=self.cfg.photo)
            for component, object_id in ENTITIES:  # one turned off (mqtt.photo = false): its config is cleared
                topic = t.discovery(component, object_id)
                conf = configs.get(topic)
                self._publish(topic, json.dumps(conf) if conf else b"", qos=1, retain=True)
        if self._last_state is not None:
            self._publish(t.state, self._last_state, qos=0, retain=True)
        if self._last_photo is not None:
            self._publish(t.photo, self._last_photo, qos=0, retain=True)

    def _work(self) -> None:
        next_state = 0.0
        sent_seq = -1
        while True:
            with self._cond:
                if not self._stop and not (self._connected and (self._announce or self._events or self._jokes
                                                                or self._photo)):
                    self._cond.wait(WORKER_TICK_S)
                stop, connected = self._stop, self._connected
                announce, self._announce = self._announce and connected, self._announce and not connected
                events = []
                jokes = []
                photo = None
                if connected:
                    events = list(self._events)
                    self._events.clear()
                    jokes = list(self._jokes)
                    self._jokes.clear()
                    photo, self._photo = self._photo, None
            try:
                if announce:
                    self._announce_now()
                for ev in events:
                    self._publish(self.topics.event, json.dumps(ev), qos=1)
                    self.events_sent += 1
                for text in jokes:
                    self._publish(self.topics.joke, text, qos=1)
                if photo is not None:
                    try:
                        self._last_photo = Path(photo).read_bytes()
                        self._publish(self.topics.photo, self._last_photo, qos=0, retain=True)
                    except OSError as e:
                        log.warning("MQTT: cannot read the photo %s: %s", photo, e.strerror or e)
                now = time.monotonic()
                if connected and self._frame is not None and self._frame_seq != sent_seq and (now >= next_state
                                                                                            or stop):
                    sent_seq = self._frame_seq
                    result, fps, shots, last_shot = self._frame
                    payload = json.dumps(state_payload(result, fps, shots, last_shot)).encode()
                    if payload != self._last_state or announce:
                        self._last_state = payload
                        self._publish(self.topics.state, payload, qos=0, retain=True)
                        self.states_sent += 1
                        next_state = now + STATE_MIN_INTERVAL_S
            except Exception:  # one bad message never stops the sink
                log.exception("MQTT: publishing failed")
            if stop:
                return


# --------------------------------------------------------------------------- djsmile mqtt --forget
def forget(mcfg, *, hostname: Optional[str] = None, timeout: float = 10.0) -> list[str]:
    """Clear this device's retained messages: every discovery config, availability, state, photo.

    Home Assistant removes the device when its configs are emptied. Returns the
    topics cleared; raises :class:`MqttError` when the broker is away or refuses us.
    """
    topics = Topics(mcfg, hostname)
    targets = [topics.discovery(c, o) for c, o in ENTITIES] if topics.discovery_prefix else []
    targets += [topics.availability, topics.state, topics.photo]
    client = _new_client(mcfg, f"djsmile-forget-{topics.device_id}")
    done = threading.Event()
    outcome: dict = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        outcome["rc"] = reason_code
        done.set()

    client.on_connect = on_connect
    try:
        client.connect(mcfg.host, mcfg.port, keepalive=KEEPALIVE_S)
    except ssl.SSLError as e:
        why = getattr(e, "verify_message", None) or e.reason
        raise MqttError(f"MQTT broker {mcfg.host}:{mcfg.port}: TLS failed ({why}); "
                        "check mqtt.ca_file (the CA that signed the broker's certificate) and mqtt.host") from None
    except OSError as e:
        raise MqttError(f"MQTT broker {mcfg.host}:{mcfg.port} unreachable ({e.__class__.__name__}: "
                        f"{getattr(e, 'strerror', None) or e}); check mqtt.host / mqtt.port") from None
    client.loop_start()
    try:
        if not done.wait(timeout):
            raise MqttError(f"MQTT broker {mcfg.host}:{mcfg.port} did not answer within {timeout:g} s")
        rc = outcome["rc"]
        if rc.is_failure:
            raise MqttError(f"MQTT broker {mcfg.host}:{mcfg.port} refused the connection ({rc}); "
                            "check mqtt.username and mqtt.password")
        infos = [client.publish(t, b"", qos=1, retain=True) for t in targets]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.05, deadline - time.monotonic()))
            if not info.is_published():
                raise MqttError(f"MQTT broker {mcfg.host}:{mcfg.port} did not confirm within {timeout:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
    return targets

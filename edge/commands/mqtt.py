"""``djsmile mqtt --forget``: remove this device from Home Assistant (clear its retained MQTT messages)."""

from __future__ import annotations

import logging

from ..argtypes import host_port

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--forget", action="store_true", required=True,
                   help="clear the retained discovery configs (Home Assistant drops the device), "
                        "availability, state and photo of this device")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", type=host_port, help="the broker (default: mqtt.host, mqtt.port)")


def apply_overrides(cfg, args) -> None:
    """``--mqtt HOST[:PORT]`` wins over the config (the CLI applies it after ``--set``)."""
    if args.mqtt is not None:
        host, port = args.mqtt
        cfg.set("mqtt.host", host)
        if port is not None:
            cfg.set("mqtt.port", port)


def main(args, cfg) -> int:
    from ..mqtt import forget

    cleared = forget(cfg.mqtt)
    for topic in cleared:
        print(topic)
    log.info("cleared %d retained topics on %s:%d; Home Assistant removes the device",
             len(cleared), cfg.mqtt.host, cfg.mqtt.port)
    return 0

"""``djsmile mqtt --forget``: remove this device from Home Assistant (clear its retained MQTT messages)."""

from __future__ import annotations

import logging

from .config import host_port

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--forget", action="store_true", required=True,
                   help="clear the retained discovery configs (Home Assistant drops the device), "
                        "availability, state and photo of this device")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", type=host_port, help="the broker (default: mqtt.host, mqtt.port)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable), e.g. --set mqtt.device_id=porch")


def main(args) -> int:
    from . import config
    from .cli import load_config
    from .mqtt import forget

    cfg = load_config(args)
    config.apply_sets(cfg, args.set)
    if args.mqtt is not None:
        host, port = args.mqtt
        cfg.set("mqtt.host", host)
        if port is not None:
            cfg.set("mqtt.port", port)
    config.cross_check(cfg)
    cleared = forget(cfg.mqtt)
    for topic in cleared:
        print(topic)
    log.info("cleared %d retained topics on %s:%d; Home Assistant removes the device",
             len(cleared), cfg.mqtt.host, cfg.mqtt.port)
    return 0

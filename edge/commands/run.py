"""``djsmile run``: the command line of :mod:`djsmile.service` (flags -> config keys, then the loop)."""

from __future__ import annotations

import argparse

from ..argtypes import host_port, positive_int


def add_arguments(p) -> None:
    p.add_argument("--source", metavar="SPEC",
                   help="'' = Pi camera, else webcam 0; 'camera' or 'pi'; a webcam index; a video file; "
                        "an image folder (default: camera.source)")
    p.add_argument("--state-dir", metavar="DIR", help="photos, events.jsonl and the joke cache go here "
                                                      "(default: storage.state_dir)")
    p.add_argument("--model", metavar="PATH", help="TFLite model (default: model.path, else the shipped one)")
    p.add_argument("--sensitivity", choices=("slight", "normal", "big"), help="smile shutter preset")
    p.add_argument("--policy", choices=("largest", "any", "all"),
                   help="whose smile counts: the largest face, any face, or all faces (group photo)")
    p.add_argument("--web", metavar="HOST:PORT", help="serve the live view on HOST:PORT (turns web.enabled on)")
    p.add_argument("--mqtt", metavar="HOST[:PORT]", type=host_port,
                   help="publish to the MQTT broker at HOST[:PORT] for Home Assistant (turns mqtt.enabled on)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="play a file source at its own frame rate, or as fast as possible (default: camera.realtime)")
    p.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None,
                   help="play a file source again from the start each time it ends; stream time keeps rising "
                        "(default: camera.loop)")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    p.add_argument("--no-gpio", action="store_true", help="no LED, shutter or button (no pins touched)")
    p.add_argument("--no-jokes", action="store_true", help="no joke on a smile")


def apply_overrides(cfg, args) -> None:
    """Command-line flags win over the config file and --set (same checks; the CLI then checks every rule)."""
    flags = [("source", "camera.source"), ("state_dir", "storage.state_dir"), ("model", "model.path"),
             ("sensitivity", "trigger.sensitivity"), ("policy", "trigger.policy")]
    for attr, key in flags:
        if getattr(args, attr, None) is not None:
            cfg.set(key, getattr(args, attr))
    if getattr(args, "realtime", None) is not None:
        cfg.set("camera.realtime", bool(args.realtime))
    if getattr(args, "loop", None) is not None:
        cfg.set("camera.loop", bool(args.loop))
    if getattr(args, "web", None) is not None:
        cfg.set("web.listen", args.web)
        cfg.set("web.enabled", True)
    if cfg.web.enabled and getattr(args, "realtime", None) is None:
        # with the live view, a file source plays at its own rate (--no-realtime to race through it)
        cfg.set("camera.realtime", True)
    if getattr(args, "mqtt", None) is not None:
        host, port = args.mqtt
        cfg.set("mqtt.host", host)
        if port is not None:
            cfg.set("mqtt.port", port)
        cfg.set("mqtt.enabled", True)
    if getattr(args, "no_gpio", False):
        for key in ("gpio.led_enabled", "gpio.shutter_enabled", "gpio.button_enabled"):
            cfg.set(key, False)
    if getattr(args, "no_jokes", False):
        cfg.set("jokes.on_smile", False)


def main(args, cfg) -> int:
    from .. import service
    return service.main(cfg, max_frames=args.max_frames)

"""Optional live view in the browser: MJPEG stream, status JSON, joke button, recent photos.

Routes (all GET unless noted):

- ``/``              the page (``static/index.html``): live stream with face boxes
                     and "NN% smiling", the state (watching / smiling / cooldown),
                     the last joke with a "next joke" button, thumbnails of the
                     newest photos.
- ``/stream.mjpg``   ``multipart/x-mixed-replace`` JPEG stream (newest frame only).
- ``/status.json``   fps, faces (box, p_smile), state, last event, uptime_s, model,
                     runtime, last_joke, photos.
- ``POST /joke``     ``teller.tell()``; at most one per ``web.joke_interval_s`` (429 otherwise).
- ``POST /calibrate`` starts a calibration inside the running loop (``calibrator.request``), with the
                     same guard as ``POST /joke`` (token, origin, one per ``web.joke_interval_s``).
- ``/photos/<name>`` a file from the photo folder (``?thumb=1``: a small JPEG of it).

One job per module:

- :mod:`.server`   :class:`WebServer`: start/stop, ``publish()`` from the loop, status, the joke and
                   calibrate buttons.
- :mod:`.encoder`  the one encoder thread: draws and encodes only while someone watches, at most
                   ``web.stream_fps`` (the loop's ``publish()`` only stores references).
- :mod:`.overlay`  face boxes, "NN% smiling" and the state drawn on the colour frame.
- :mod:`.stream`   the broadcaster: ``publish(jpeg, seq)``; a viewer ``wait_newer(seq, timeout)``;
                   viewer slots, stalled viewers evicted for newcomers.
- :mod:`.handler`  HTTP routes, using only the server's public side.
- :mod:`.auth`     token / cookie / Host / Origin checks and the joke rate limit.
- :mod:`.photos`   only photos djsmile wrote, from the photo folder; thumbnails.

Why the standard library (``http.server.ThreadingHTTPServer``) and not Flask:
on a Raspberry Pi the live view is an optional extra next to the detector, so
it should cost nothing when unused and little when used. The standard library
adds no dependency to install, pin or audit (Flask pulls in Werkzeug, Jinja2,
itsdangerous, click, blinker), nothing extra to import at start-up, and the
whole server is a few hundred lines we can read. A thread per client is the
right model for a handful of viewers on a home network: an MJPEG client is a
long-lived blocking write loop, which a thread handles simply, and the JPEG
encoding (OpenCV, releases the GIL) happens once per frame in one encoder
thread no matter how many clients watch. We need no templates, sessions or
routing tables beyond five paths.
"""

from ..config import parse_listen
from .handler import BOUNDARY
from .overlay import frame_image, render_overlay
from .photos import is_our_photo
from .server import WebServer

__all__ = ["BOUNDARY", "WebServer", "frame_image", "is_our_photo", "parse_listen", "render_overlay"]

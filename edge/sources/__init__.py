"""Frame sources behind one small interface: Pi camera, OpenCV (webcam or video file), image folder.

Every source yields :class:`Frame` objects: a 2-D uint8 gray analysis image,
the frame's index from the start of the run, its stream time in seconds, a
way to get the full-resolution colour still (only when a photo is taken) and
the colour image at the analysis size (:meth:`Frame.color`, for the live view;
made only when asked for; on the Pi from the lores YUV420 frame's chroma).

* :class:`PiCamera2Source` (``picamera.py``) — ``picamera2`` (imported only when used): a
  ``lores`` YUV420 (or NV12) stream at the analysis size (its Y plane, with the
  row stride removed, is the gray frame) and the full-resolution ``main`` stream
  for stills, in whatever format the camera configured (RGB888 asked for;
  BGR888, XRGB8888, XBGR8888, NV12, YUV420 converted). Stream time is the
  sensor timestamp.
* :class:`OpenCVSource` (``opencv.py``) — ``cv2.VideoCapture``: a webcam index (stream time
  from the monotonic clock), a video file (its own timestamps) or a live stream URL (the monotonic
  clock: an HTTP MJPEG stream has no timestamps, and FFmpeg's default 25 fps would be wrong).
* :class:`FolderSource` (``folder.py``) — the images in a folder, sorted by name (numbers in
  names compare as numbers: ``2.jpg`` before ``10.jpg``); frame ``i`` is at
  ``i / camera.fps`` seconds; image files are sniffed and read in ``images.py``.
* :class:`LoopSource` (``loop.py``) — a file source played again and again.

:func:`open_source` (``choose.py``) picks one from a ``--source`` string. ``reader.py``:
:class:`ThreadedSource` reads a camera on its own thread: the loop always gets the newest frame, and
frames it had no time for are dropped (and counted) instead of queueing up; :class:`FrameReader`
lets a stop not wait for a blocked read.
"""

from .base import Source
from .choose import open_one, open_source
from .folder import FolderSource, image_folders
from .frame import Frame
from .images import (IMAGE_EXTS, MAX_IMAGE_PIXELS, ImageRefused, ImageTooBig, ImageTruncated, file_kind,
                     image_header, image_size, image_truncated, read_image)
from .loop import LoopSource
from .opencv import NOT_A_VIDEO_HINT, OpenCancelled, OpenCVSource, redact_url, webcam_present
from .picamera import LORES_FORMATS, MAIN_FORMATS, PI_SPECS, PiCamera2Source, pi_camera_present, stream_to_bgr
from .reader import FrameReader, ThreadedSource

__all__ = [
    "Frame", "Source",
    "PiCamera2Source", "pi_camera_present", "stream_to_bgr", "MAIN_FORMATS", "LORES_FORMATS", "PI_SPECS",
    "OpenCVSource", "OpenCancelled", "redact_url", "webcam_present", "NOT_A_VIDEO_HINT",
    "FolderSource", "image_folders",
    "IMAGE_EXTS", "MAX_IMAGE_PIXELS", "ImageRefused", "ImageTooBig", "ImageTruncated", "file_kind",
    "image_header", "image_size", "image_truncated", "read_image",
    "LoopSource", "open_source", "open_one",
    "FrameReader", "ThreadedSource",
]

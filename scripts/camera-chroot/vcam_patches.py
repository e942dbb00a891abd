"""TEST-ONLY patches: picamera2 (pinned) on libcamera 0.4's virtual camera in a VM, for
scripts/check-camera-chroot.sh. Never part of djsmile: a .pth file in the check's chroot venv loads
this module; djsmile's code runs unchanged on top.

What it patches, each for a fact of the test machine, not of a Raspberry Pi:
(a) ``pykms`` (kms++; picamera2's DRM preview imports it) is on neither PyPI nor Debian: a stub module
    (no preview is ever started here).
(b) picamera2 allocates its buffers from ``/dev/dma_heap`` (``DmaAllocator``, hard-coded in
    ``Picamera2.__init__`` and ``close()``); this VM has neither dma-heap nor udmabuf: a memfd-backed
    allocator with one ``libcamera.FrameBuffer`` plane per colour plane (NV12: Y, then interleaved UV).
(c) ``Picamera2(0)`` reads the sensor modes from a Raw configuration, which the virtual camera rejects:
    fall back to the viewfinder's formats and sizes.
(d) libcamera 0.4.0's virtual pipeline never fills the buffers' metadata (fixed in 0.5.0), so picamera2
    drops every frame as failed and ``capture_request()`` waits forever: with libcamera < 0.5 every
    completed request counts as a good frame.
(e) only with DJSMILE_VCAM_FPS set (the check's calibration step): the virtual camera makes a frame as
    soon as a request is queued (no sensor pacing; FrameRate is ignored); requests are handed to libcamera
    at that many frames a second instead, on a thread of their own, so a picture changes at a known
    stream time (``djsmile calibrate``'s two phases are stream time).
(b)-(d) touch picamera2's internals: the check pins picamera2 to PICAMERA2_VERSION and this module
refuses any other version.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import mmap
import os
import re
import sys
import types

PICAMERA2_VERSION = "0.3.38"


# --------------------------------------------------------------------------- (a) pykms
class _Names:
    """``pykms.PixelFormat.X`` / ``pykms.PlaneType.X``: any name, as a string (only used as dict values)."""

    def __getattr__(self, name):
        return name


class _NoDisplay:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("pykms is a stub in this test chroot: no DRM preview")


def _stub_pykms() -> None:
    if "pykms" in sys.modules:
        return
    m = types.ModuleType("pykms", "test-only stub of kms++ (scripts/camera-chroot/vcam_patches.py)")
    m.PixelFormat = _Names()
    m.PlaneType = _Names()
    for name in ("Card", "ResourceManager", "DumbFramebuffer", "DmabufFramebuffer", "AtomicReq"):
        setattr(m, name, _NoDisplay)
    sys.modules["pykms"] = m


# --------------------------------------------------------------------------- (b) memfd buffers
def _plane_lengths(pixel_format: str, stride: int, height: int, frame_size: int) -> list[int]:
    if pixel_format in ("NV12", "NV21"):
        planes = [stride * height, stride * (height // 2)]
    elif pixel_format in ("YUV420", "YVU420"):
        planes = [stride * height, (stride // 2) * (height // 2), (stride // 2) * (height // 2)]
    else:
        planes = [frame_size]
    return planes if sum(planes) == frame_size else [frame_size]


def _make_memfd_allocator(libcamera, dmaallocator_mod):
    from picamera2.allocators.allocator import Sync

    class MemfdAllocator(dmaallocator_mod.DmaAllocator):
        """DmaAllocator's bookkeeping (keyed by the first plane's fd) over memfd buffers."""

        def __init__(self):
            self.sync = self.MemfdSync
            self.dmaHeap = None
            self.mapped_buffers = {}
            self.mapped_buffers_used = {}
            self.frame_buffers = {}
            self.open_fds = []
            self.libcamera_fds = []

        def allocate(self, libcamera_config, _):
            self.libcamera_fds = []
            self.cleanup()
            for fd in self.open_fds:
                os.close(fd)
            self.frame_buffers = {}
            self.open_fds = []
            for stream_config in libcamera_config:
                size = stream_config.frame_size
                lengths = _plane_lengths(str(stream_config.pixel_format), stream_config.stride,
                                         stream_config.size.height, size)
                fbs = []
                for i in range(stream_config.buffer_count):
                    fd = os.memfd_create(f"picamera2-{i}", 0)
                    os.ftruncate(fd, size)
                    self.open_fds.append(fd)
                    planes, offset = [], 0
                    for length in lengths:
                        p = libcamera.FrameBuffer.Plane()
                        p.fd, p.offset, p.length = fd, offset, length
                        planes.append(p)
                        offset += length
                    fb = libcamera.FrameBuffer(planes)
                    key = fb.planes[0].fd   # libcamera holds its own copy of the fd: the bookkeeping's key
                    self.libcamera_fds.append(key)
                    self.mapped_buffers_used[key] = False
                    fbs.append(fb)
                    self.mapped_buffers[fb] = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                self.frame_buffers[stream_config.stream] = fbs

        class MemfdSync(Sync):
            def __init__(self, allocator, fb, write):
                self.allocator, self.fb = allocator, fb

            def __enter__(self):
                mm = self.allocator.mapped_buffers.get(self.fb)
                if mm is None:
                    raise RuntimeError("failed to find buffer in MemfdSync")
                return mm

            def __exit__(self, *exc):
                pass

    return MemfdAllocator


# --------------------------------------------------------------------------- (c), (d) and the hook
def _libcamera_version() -> tuple[int, ...]:
    """The loaded libcamera.so's version, from this process's memory map (libcamera.so.0.4.0)."""
    with open("/proc/self/maps") as f:
        for line in f:
            m = re.search(r"/libcamera\.so\.(\d+(?:\.\d+)+)$", line.strip())
            if m:
                return tuple(int(v) for v in m.group(1).split("."))
    return ()


def _patch(module) -> None:
    from importlib.metadata import version

    import libcamera
    from picamera2.allocators import dmaallocator

    got = version("picamera2")
    if got != PICAMERA2_VERSION:
        raise RuntimeError(f"vcam_patches.py is written for picamera2 {PICAMERA2_VERSION}, not {got}")
    Picamera2 = module.Picamera2

    module.DmaAllocator = _make_memfd_allocator(libcamera, dmaallocator)   # (b)

    raw_modes = Picamera2._get_raw_modes                                   # (c)

    def _get_raw_modes(self):
        try:
            modes = raw_modes(self)
        except Exception:
            modes = []
        if modes:
            return modes
        formats = self.camera.generate_configuration([libcamera.StreamRole.Viewfinder]).at(0).formats
        return [{"format": str(pix), "size": (s.width, s.height)}
                for pix in formats.pixel_formats for s in formats.sizes(pix)]

    Picamera2._get_raw_modes = _get_raw_modes

    if _libcamera_version() < (0, 5):                                      # (d)
        src = inspect.getsource(Picamera2.process_requests)
        check = "next(iter(req.request.buffers.values())).metadata.status == libcamera.FrameMetadata.Status.Success"
        if check not in src:
            raise RuntimeError("vcam_patches.py: picamera2's process_requests changed; patch (d) needs a look")
        src = "\n".join(line[4:] for line in src.replace(check, "True").splitlines())
        ns: dict = {}
        exec(compile(src, f"<vcam_patches: {module.__file__}>", "exec"), module.__dict__, ns)
        Picamera2.process_requests = ns["process_requests"]

    fps = float(os.environ.get("DJSMILE_VCAM_FPS") or 0)
    if fps > 0:
        _pace(libcamera, fps)


def _pace(libcamera, fps: float) -> None:
    """(e) Camera.queue_request returns at once; a thread queues each request at t0 + k / fps (or at
    once when it comes late), so frame k's SensorTimestamp is about t0 + k / fps."""
    import collections
    import threading
    import time

    real = libcamera.Camera.queue_request
    cond = threading.Condition()
    pending: collections.deque = collections.deque()
    period = 1.0 / fps
    nxt = [None]

    def worker():
        while True:
            with cond:
                while not pending:
                    cond.wait()
                cam, req = pending.popleft()
            now = time.monotonic()
            due = now if nxt[0] is None else nxt[0]
            if due > now:
                time.sleep(due - now)
            nxt[0] = due + period
            try:
                real(cam, req)
            except Exception:   # the camera stopped meanwhile: the request is not needed any more
                pass

    def queue_request(self, req):
        with cond:
            pending.append((self, req))
            cond.notify()

    threading.Thread(target=worker, name="vcam-pacer", daemon=True).start()
    libcamera.Camera.queue_request = queue_request


class _AfterPicamera2(importlib.abc.MetaPathFinder):
    """Runs _patch on picamera2.picamera2 right after it is executed (picamera2 is imported lazily)."""

    def find_spec(self, name, path, target=None):
        if name != "picamera2.picamera2":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


_stub_pykms()
sys.meta_path.insert(0, _AfterPicamera2())

"""``ferlab serve``: the web page and HTTP API on the local machine (127.0.0.1 by default).

Loopback by default, where only the Host and Origin checks of :mod:`.guards` apply (they keep
other web pages from driving the server). Listening beyond loopback (``--host 0.0.0.0``) is an
explicit choice: it prints a warning and requires a token on the API and the websocket
(``--token``, ``$FERLAB_SERVE_TOKEN``, or a random one printed in the page's URL). The socket
is bound before uvicorn starts, so a busy port is a one-line error and ``--port 0`` (any free
port) prints the real URL.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from ..errors import FerlabError
from ..inference import options as inference_options


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise FerlabError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise FerlabError(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                          "(port in use? pass another --port, or --port 0 for any free one)") from None
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    from .guards import Access, allowed_hosts_for, is_loopback, resolve_token
    from .limits import Limits

    if not (importlib.util.find_spec("websockets") or importlib.util.find_spec("wsproto")):
        raise FerlabError("the live page needs a websocket library: pip install 'uvicorn[standard]' (or websockets)")
    options = inference_options.from_args(args)  # bad values fail before the port is taken
    if args.max_image_mpx is not None and not args.max_image_mpx > 0:
        raise FerlabError(f"--max-image-mpx must be > 0, got {args.max_image_mpx:g}")
    pixels = {} if args.max_image_mpx is None else {"max_image_pixels": int(args.max_image_mpx * 1e6)}
    limits = Limits(max_upload_mb=args.max_upload_mb, max_clients=args.max_clients, max_fps=args.max_fps,
                    max_video_seconds=args.max_video_seconds, max_video_frames=args.max_video_frames,
                    video_fps=args.video_fps, workers=args.workers, **pixels)
    beyond = not is_loopback(args.host)
    token, generated = resolve_token(args.token, dict(os.environ), beyond)
    access = Access(allowed_hosts_for(args.host, args.allowed_host), token)
    sock = _bind(args.host, args.port)
    try:
        import uvicorn

        from ..inference import Recognizer
        from .app import create_app

        app = create_app(Recognizer.from_pretrained(options=options), limits, access=access)
        model = app.state.engine.recognizer
        host, port = sock.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else _url_host(host)
        name = getattr(model, "source", None) or "model"
        # the token rides in the fragment: the page reads it, the browser never sends it
        fragment = f"#token={token}" if token else ""
        print(f"ferlab serve: http://{shown}:{port}/{fragment}  (API docs /docs; model {name}; Ctrl-C stops)",
              flush=True)
        if beyond:
            lan = [h for h in access.allowed_hosts if not is_loopback(h) and not h.startswith("*")]
            if lan and host in ("0.0.0.0", "::"):
                print(f"ferlab serve: on the network: http://{lan[0]}:{port}/{fragment}", flush=True)
            kept = " (generated: pass --token or set FERLAB_SERVE_TOKEN to keep one)" if generated else ""
            print(f"ferlab serve: warning: listening on {args.host}, reachable from the network; the API and "
                  f"websocket need the token{kept}. Host names accepted: {', '.join(access.allowed_hosts)} "
                  "(more with --allowed-host)", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level=args.log_level, ws_max_size=limits.max_frame_bytes + 1024,
                                ws_ping_interval=20, ws_ping_timeout=20, timeout_graceful_shutdown=3,
                                access_log=args.access_log)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="web page (webcam + uploads) and HTTP API on this machine",
                       description="Start a local web server: open the printed URL for the live webcam page "
                                   "and photo/video uploads; JSON API under /api (schema at /openapi.json, "
                                   "offline docs at /docs).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest photo/video upload")
    p.add_argument("--max-clients", type=int, default=8, metavar="N", help="live webcam connections at once")
    p.add_argument("--max-fps", type=float, default=30.0, metavar="F", help="live results per second per client")
    p.add_argument("--max-video-seconds", type=float, default=120.0, metavar="S",
                   help="analyse at most this much of an uploaded video")
    p.add_argument("--max-video-frames", type=int, default=600, metavar="N", help="analysed frames per video")
    p.add_argument("--video-fps", type=float, default=10.0, metavar="F", help="default analysis rate for videos")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="inference threads")
    p.add_argument("--max-image-mpx", type=float, default=None, metavar="MPX",
                   help="largest image, in megapixels, read from its header before decoding "
                        "(default $FERLAB_MAX_PIXELS, else 50)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host name the server answers to (repeatable; '*.example.org' for subdomains); "
                        "loopback names and the --host address are always allowed")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="require this token on the API and websocket (default $FERLAB_SERVE_TOKEN; beyond "
                        "loopback a random one is generated and printed in the page's URL)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--access-log", action="store_true", help="log every request")
    inference_options.add_arguments(p)  # the same flags as live / video, from one declaration
    p.set_defaults(func=cmd_serve)

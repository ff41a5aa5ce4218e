"""The review page's web server: a Flask app over a `Review`.

Routes (JSON unless said; images are addressed by key, never by path):

| route | what |
|---|---|
| `GET /` | the page (`static/index.html`) |
| `GET /api/info` | run, images, classes, counts, the fine-tuning command |
| `GET /api/gallery?page=&per_page=&filter=&class=` | one page of the gallery |
| `GET /api/image/<key>` | one image's prediction, flags and map version |
| `GET /api/image/<key>/picture.png` | the image |
| `GET /api/image/<key>/thumbnail.png` | the image with its current map |
| `GET /api/image/<key>/map.png?kind=model\\|corrected\\|cam\\|gradcam\\|after` | a grey map |
| `PUT /api/image/<key>/map` | save a corrected map: a grey PNG, `If-Match: <version>` |
| `GET /api/finetune?epochs=&offset=` | the command and the running job's status and log |
| `POST /api/finetune` | start it (`{"epochs": N}`) |
| `GET /api/before_after` | each corrected image's distance to its correction, before and after |

With a token every request must carry it: the `X-Review-Token` header, or
the cookie the page sets when first opened with `?token=` (it then
redirects to `/`, so the token leaves the address bar, the history and
every later URL; `?token=` on any request is still accepted, for scripts).
The access log never shows it. Without it the answer is 401. Without a token (a server on this machine only), a
request naming another host (DNS rebinding) gets 403. Requests that change
something are refused from another site's page (their `Origin` must be this
server: 403) and `POST` takes JSON only (415), so a web page elsewhere
cannot save maps or start a training through the user's browser.
"""

import hmac
import os
import re
import urllib.parse

import flask
from werkzeug.exceptions import HTTPException

from keras_amb.app.review import images
from keras_amb.app.review import session

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
COOKIE = "keras_amb_review_token"
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
# Query numbers: whole, non-negative, and small (`offset=1e23` is a 400).
MAX_QUERY_NUMBER = 10**9
_TOKEN_IN_URL = re.compile(r"(token=)[^&\s\"]*")


def redact(text):
    """`text` with every `token=...` value replaced by `***`."""
    return _TOKEN_IN_URL.sub(r"\1***", text)


def create_app(review, token=None):
    """A Flask app serving `review`; `token` (str or None) guards every route."""
    app = flask.Flask(__name__, static_folder=STATIC, static_url_path="/static")
    # `/api/image//etc/x` is an unknown key (404), not a redirect elsewhere.
    app.url_map.merge_slashes = False
    # Flask refuses larger bodies with 413 before reading them.
    app.config["MAX_CONTENT_LENGTH"] = images.MAX_UPLOAD_BYTES

    @app.before_request
    def check_token():
        request = flask.request
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin and urllib.parse.urlsplit(origin).netloc != request.host:
                return _error(403, f"requests from {origin} are refused")
        if token is None:
            name = urllib.parse.urlsplit("//" + request.host).hostname
            if name not in LOCAL_NAMES:
                return _error(403, f"this review serves this machine only, not {request.host}")
            return None
        given = (flask.request.args.get("token") or flask.request.headers.get("X-Review-Token")
                 or flask.request.cookies.get(COOKIE) or "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return _error(401, "this review needs its token: open the URL printed when it "
                          "started (…/?token=…)")
        return None

    @app.errorhandler(session.ReviewError)
    def review_error(error):
        return _error(error.status, str(error))

    @app.errorhandler(413)
    def too_large(error):
        return _error(413, f"request over the limit of {images.MAX_UPLOAD_BYTES} bytes")

    @app.errorhandler(404)
    def not_found(error):
        return _error(404, "no such page")

    @app.errorhandler(405)
    def not_allowed(error):
        return _error(405, "method not allowed here")

    @app.after_request
    def no_sniffing(response):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(Exception)
    def unexpected(error):
        if isinstance(error, HTTPException):
            return _error(error.code or 500, error.description or error.name)
        app.logger.exception("review: unexpected error")
        return _error(500, f"the server failed: {error.__class__.__name__}: {error}")

    @app.get("/")
    def page():
        if token is not None and flask.request.args.get("token"):
            # The cookie carries the token from now on; the URL drops it.
            response = flask.redirect("./", code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
            return response
        return flask.send_from_directory(STATIC, "index.html")

    @app.get("/api/info")
    def info():
        epochs = _int_arg("epochs", 3)
        argv = review.finetune.argv(epochs)
        return {
            "run": review.run,
            "images": review.images.name,
            "dataset": review.images.dataset,
            "split": review.images.split,
            "labelled": review.images.labelled,
            "classes": review.class_names,
            "output": review.output_dir,
            "maps": review.maps_dir,
            "summary": review.summary(),
            "finetune_command": None if argv is None else _shell(argv),
            "max_upload_bytes": images.MAX_UPLOAD_BYTES,
            "read_only": review.read_only,
        }

    @app.get("/api/gallery")
    def gallery():
        return review.page(
            _int_arg("page", 0), _int_arg("per_page", 24, high=1000),
            flask.request.args.get("filter") or None,
            flask.request.args.get("class") or None,
        )

    @app.get("/api/image/<path:key>/picture.png")
    def picture(key):
        return _png(review.picture(review.lookup(key)))

    @app.get("/api/image/<path:key>/thumbnail.png")
    def thumbnail(key):
        return _png(review.thumbnail(review.lookup(key)))

    @app.get("/api/image/<path:key>/map.png")
    def map_png(key):
        index = review.lookup(key)
        return _png(review.map_png(index, flask.request.args.get("kind", "model")))

    @app.put("/api/image/<path:key>/map")
    def save_map(key):
        review.lookup(key)
        expected = flask.request.headers.get("If-Match", "").strip('"')
        data = flask.request.get_data(cache=False)
        version = review.save(key, data, expected)
        return {"key": key, "version": version, "summary": review.summary()}

    @app.get("/api/image/<path:key>")
    def image(key):
        index = review.lookup(key)
        review.score([index])
        item = review.item(index)
        height, width = review.image(index).shape[:2]
        item.update(width=width, height=height)
        return item

    @app.get("/api/finetune")
    def finetune_status():
        status = review.finetune.status(_int_arg("offset", 0))
        argv = review.finetune.argv(_int_arg("epochs", 3))
        status["command"] = status.get("command") or (None if argv is None else _shell(argv))
        return status

    @app.post("/api/finetune")
    def finetune_start():
        if not flask.request.is_json:
            return _error(415, 'send JSON: {"epochs": N}')
        body = flask.request.get_json(silent=True)
        if not isinstance(body, dict):
            raise session.ReviewError('send JSON: {"epochs": N}')
        epochs = body.get("epochs", 3)
        if not isinstance(epochs, int) or isinstance(epochs, bool):
            raise session.ReviewError(f"epochs must be a whole number, got {epochs!r}")
        return review.start_finetune(epochs)

    @app.get("/api/before_after")
    def before_after():
        return {"images": review.before_after()}

    return app


def _error(status, message):
    return flask.jsonify({"error": message}), status


def _png(data):
    return flask.Response(data, mimetype="image/png")


def _int_arg(name, default, high=MAX_QUERY_NUMBER):
    """A query number: digits only, in [0, high]; else a 400 naming it."""
    value = flask.request.args.get(name)
    if value is None or value == "":
        return default
    if not (value.isascii() and value.isdigit()) or len(value) > 12 or int(value) > high:
        raise session.ReviewError(
            f"{name} must be a whole number in [0, {high}], got {value[:40]!r}")
    return int(value)


def _shell(argv):
    import shlex

    return shlex.join(argv)


def serve(app, host, port, ready=None):
    """Serves `app` (threaded) until interrupted; `ready(port)` is called
    with the bound port (useful with port 0)."""
    from werkzeug.serving import WSGIRequestHandler
    from werkzeug.serving import make_server

    class Handler(WSGIRequestHandler):
        """Werkzeug's request log, with tokens redacted."""

        def log(self, type, message, *args):
            super().log(type, redact(message % args if args else message))

    server = make_server(host, port, app, threaded=True, request_handler=Handler)
    if ready is not None:
        ready(server.server_port)
    try:
        server.serve_forever()
    finally:
        server.server_close()

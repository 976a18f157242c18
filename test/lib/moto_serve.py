"""moto's server (as `moto_server -H HOST -p PORT`), with S3 conditional writes made atomic.

moto checks `If-None-Match: *` and then stores the object in two steps without a lock, so two
concurrent conditional PUTs of one key can both succeed; AWS S3 makes the check and the write
atomic (one gets 200, the others 412). That gap would make every test of racing writers flaky
against moto. Here, requests that carry a conditional header (PUT/POST with If-None-Match or
If-Match) run one at a time; everything else is moto unchanged, threaded as usual.

Run with the moto venv's python: test/lib/moto.sh does.
"""

import argparse
import os
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))

    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    conditional = threading.Lock()

    def serialized(environ, start_response):
        if environ.get("REQUEST_METHOD") in ("PUT", "POST") and (
            "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ
        ):
            with conditional:
                # The whole response is produced under the lock.
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(
        args.host,
        args.port,
        serialized,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()

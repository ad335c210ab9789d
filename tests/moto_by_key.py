"""moto's S3 server (its own WSGI app, as ``moto_server`` runs it) with one more log: every
request as a JSON line ``[method, path, access key]``, the key read from the request's SigV4
``Authorization`` header. Tests that give each node of a cluster its own access key read from it
which node fetched what (``tests/s3_server.py``: ``S3Server(keys=...)``).

    python tests/moto_by_key.py HOST PORT REQUESTS_LOG
"""

from __future__ import annotations

import json
import re
import sys
import threading

from moto.moto_server.threaded_moto_server import DomainDispatcherApplication, create_backend_app
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import run_simple

CREDENTIAL = re.compile(r"Credential=([^/]+)/")


def logged(app, path: str):
    log, lock = open(path, "a", buffering=1), threading.Lock()  # noqa: SIM115  (open while serving)

    def serve(environ, start_response):
        key = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        with lock:
            log.write(json.dumps([environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                  key.group(1) if key else ""]) + "\n")
        return app(environ, start_response)

    return serve


if __name__ == "__main__":
    host, port, requests = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run_simple(host, port, logged(DomainDispatcherApplication(create_backend_app), requests), threaded=True,
               request_handler=MotoRequestHandler)

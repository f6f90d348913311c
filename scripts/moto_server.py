"""moto server for the Portcullis tests, applying one request at a time.

DynamoDB applies each conditional write and each transaction atomically; moto's
threaded server does not (two requests can interleave between a condition check
and its write). Serializing request handling restores that atomicity, so races
the tests provoke (two refreshes with one token) meet DynamoDB's semantics.
Connections stay concurrent (keep-alive works); only the handling is serialized.

Cognito checks TOTP codes (against the fixed secret moto hands out) instead of
accepting any code, so wrong codes are refused as in AWS.

GET /portcullis/ses/sent lists the messages SES (v1 and v2) accepted, as JSON
[{id, source, destinations, subject, body}], so tests read the mail they caused.

usage: python moto_server.py HOST PORT
"""

import json
import os
import sys
import threading

os.environ["MOTO_COGNITO_IDP_USER_POOL_ENABLE_TOTP"] = "true"

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def sent_mail(start_response):
    from moto.ses.models import ses_backends

    sent = []
    for account in ses_backends.values():
        for backend in account.values():
            for message in backend.sent_messages:
                sent.append({
                    "id": message.id,
                    "source": getattr(message, "source", None),
                    "destinations": getattr(message, "destinations", None),
                    "subject": getattr(message, "subject", None),
                    "body": getattr(message, "body", None),
                })
    body = json.dumps(sent).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            if environ.get("PATH_INFO") == "/portcullis/ses/sent":
                return sent_mail(start_response)
            return list(app(environ, start_response))

    run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()

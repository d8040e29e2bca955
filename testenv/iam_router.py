"""IAM account router for Kubeflow's profile controller in the local stack.

The profile controller talks to IAM with the AWS SDK for Go v2 and only
AWS_ENDPOINT_URL: it cannot send moto's `x-moto-account-id` header, so on its
own every call would land in moto's default account. The tests give every
World its own moto account. This router sits between the controller and moto
and puts each call in the account that holds the role the call names:

- a test registers its World's account (PUT /_router/accounts/ID);
- for a call with a `RoleName` (the controller only sends GetRole and
  UpdateAssumeRolePolicy, with a role name and no account), the router asks
  moto, with GetRole in each registered account and in the default account,
  which one holds that role, and forwards the call there unchanged but for
  the account header. Nobody holds it: the default account (moto answers
  NoSuchEntity, as IAM would). Two accounts hold it: the call is refused with
  an error naming both, rather than guessed;
- every forwarded call is recorded (account, action, role, HTTP status, IAM
  error code), so a test can read what the controller did in its account:
  GET /_router/calls?account=ID[&role=NAME], GET /_router/counts[?account=ID].

It answers nothing itself: moto answers every forwarded call. Its own lookups
(GetRole per candidate account) are not recorded as the controller's calls.

Python's standard library only, run with the moto venv's interpreter; see
testenv/README.md for why it is not Rust or Go.

    python iam_router.py --upstream http://127.0.0.1:MOTO --listen 127.0.0.1:PORT --default-account ID
"""

import argparse
import http.client
import http.server
import json
import re
import sys
import threading
import time
import urllib.parse

ACCOUNT_HEADER = "x-moto-account-id"
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
# moto picks the service from the SigV4 credential scope and checks no signature.
LOOKUP_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, "
    "SignedHeaders=host, Signature=0"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class Router:
    def __init__(self, upstream, default_account):
        url = urllib.parse.urlsplit(upstream)
        self.host = url.hostname
        self.port = url.port or 80
        self.default_account = default_account
        self.lock = threading.Lock()
        self.accounts = []  # registered, oldest first
        self.calls = []  # one dict per forwarded call

    def moto(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def holds_role(self, account, role):
        body = urllib.parse.urlencode(
            {"Action": "GetRole", "Version": "2010-05-08", "RoleName": role}
        ).encode()
        status, _, _ = self.moto(
            "POST",
            "/",
            {
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                "Authorization": LOOKUP_AUTH,
                ACCOUNT_HEADER: account,
            },
            body,
        )
        return status == 200

    def route(self, role):
        """(account, refusal): where a call naming `role` goes."""
        if role is None:
            return self.default_account, None
        with self.lock:
            candidates = list(self.accounts)
        if self.default_account not in candidates:
            candidates.append(self.default_account)
        holders = [a for a in candidates if self.holds_role(a, role)]
        if len(holders) > 1:
            return None, f"role {role} exists in several registered accounts: {', '.join(holders)}"
        return (holders[0] if holders else self.default_account), None

    def record(self, call):
        with self.lock:
            self.calls.append(call)

    def register(self, account):
        with self.lock:
            if account not in self.accounts:
                self.accounts.append(account)

    def unregister(self, account):
        with self.lock:
            if account in self.accounts:
                self.accounts.remove(account)

    def select(self, account=None, role=None):
        with self.lock:
            return [
                c
                for c in self.calls
                if (account is None or c["account"] == account)
                and (role is None or c["role"] == role)
            ]


def form_value(body, query, key):
    for source in (body.decode("utf-8", "replace"), query or ""):
        values = urllib.parse.parse_qs(source).get(key)
        if values:
            return values[0]
    return None


def iam_error_code(body):
    match = re.search(rb"<Code>([^<]+)</Code>", body)
    return match.group(1).decode() if match else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    router = None  # set in main

    def log_message(self, fmt, *args):
        pass  # calls are logged in forward(), control requests need no log

    def reply(self, status, body, content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body, indent=1, sort_keys=True).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def control(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        self.body()
        if method == "GET" and url.path == "/_router/health":
            return self.reply(200, "ok\n", "text/plain")
        if method == "GET" and url.path == "/_router/accounts":
            with self.router.lock:
                return self.reply(200, list(self.router.accounts))
        if len(parts) == 3 and parts[1] == "accounts" and method in ("PUT", "DELETE"):
            if not ACCOUNT_RE.match(parts[2]):
                return self.reply(400, "an account id is 12 digits\n", "text/plain")
            if method == "PUT":
                self.router.register(parts[2])
            else:
                self.router.unregister(parts[2])
            return self.reply(200, "ok\n", "text/plain")
        if method == "GET" and url.path == "/_router/calls":
            return self.reply(200, self.router.select(query.get("account"), query.get("role")))
        if method == "GET" and url.path == "/_router/counts":
            counts = {}
            for call in self.router.select(query.get("account"), query.get("role")):
                per_action = counts.setdefault(call["account"], {}).setdefault(
                    call["action"], {"calls": 0, "errors": 0}
                )
                per_action["calls"] += 1
                if call["status"] >= 400:
                    per_action["errors"] += 1
            return self.reply(200, counts)
        return self.reply(
            404,
            "GET /_router/health | /_router/accounts | /_router/calls?account=&role= | "
            "/_router/counts?account=; PUT|DELETE /_router/accounts/ID\n",
            "text/plain",
        )

    def forward(self, method):
        url = urllib.parse.urlsplit(self.path)
        body = self.body()
        action = form_value(body, url.query, "Action") or "(none)"
        role = form_value(body, url.query, "RoleName")
        started = time.monotonic()
        try:
            account, refusal = self.router.route(role)
        except OSError as e:
            return self.reply(502, f"iam router: moto unreachable: {e}\n", "text/plain")
        if refusal is not None:
            self.router.record(
                {"account": None, "action": action, "role": role, "status": 409,
                 "error": "AmbiguousRole"}
            )
            print(f"refused {action} {role}: {refusal}", flush=True)
            xml = (
                '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
                f"<Type>Sender</Type><Code>AmbiguousRole</Code><Message>iam router: {refusal}"
                "</Message></Error><RequestId>iam-router</RequestId></ErrorResponse>"
            )
            return self.reply(409, xml, "text/xml")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers = {k: v for k, v in headers.items() if k.lower() != ACCOUNT_HEADER}
        headers[ACCOUNT_HEADER] = account
        try:
            status, response_headers, response_body = self.router.moto(
                method, self.path, headers, body
            )
        except OSError as e:
            return self.reply(502, f"iam router: moto unreachable: {e}\n", "text/plain")
        error = iam_error_code(response_body) if status >= 400 else None
        self.router.record(
            {"account": account, "action": action, "role": role, "status": status, "error": error}
        )
        print(
            f"{action} role={role} -> account {account}: {status} {error or ''}"
            f" ({(time.monotonic() - started) * 1000:.0f} ms)",
            flush=True,
        )
        self.send_response(status)
        for key, value in response_headers:
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(response_body)))
        self.end_headers()
        self.wfile.write(response_body)

    def handle_method(self, method):
        if self.path.startswith("/_router/"):
            self.control(method)
        else:
            self.forward(method)

    def do_GET(self):
        self.handle_method("GET")

    def do_POST(self):
        self.handle_method("POST")

    def do_PUT(self):
        self.handle_method("PUT")

    def do_DELETE(self):
        self.handle_method("DELETE")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="moto's URL")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT")
    parser.add_argument("--default-account", default="123456789012")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    Handler.router = Router(args.upstream, args.default_account)
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"iam router on http://{host}:{server.server_address[1]} -> {args.upstream}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

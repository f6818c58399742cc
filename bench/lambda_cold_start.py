"""Cold start of the query function's release bootstrap, as Lambda runs it:
a fresh process per sample, talking to a minimal Lambda runtime API served
here. Prints, per sample and as medians: init (process start to its first
"next invocation" request) and first query (that request to the response).
  python3 bench/lambda_cold_start.py <bootstrap> <s3://bucket/prefix> <sql> [samples]
Needs LOCALSTACK_ENDPOINT (the lake is on LocalStack S3)."""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

bootstrap, lake, sql = sys.argv[1], sys.argv[2], sys.argv[3]
samples = int(sys.argv[4]) if len(sys.argv) > 4 else 5
endpoint = os.environ["LOCALSTACK_ENDPOINT"]

# A Lambda function URL event (payload 2.0), as lambda_http reads it.
EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/query",
    "rawQueryString": urllib.parse.urlencode({"q": sql}),
    "queryStringParameters": {"q": sql},
    "headers": {"host": "lambda-url.local", "accept": "application/json"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "lambda-url.local",
        "domainPrefix": "local",
        "http": {"method": "GET", "path": "/query", "protocol": "HTTP/1.1",
                 "sourceIp": "127.0.0.1", "userAgent": "bench"},
        "requestId": "bench",
        "routeKey": "$default",
        "stage": "$default",
        "time": "29/Nov/2026:00:00:00 +0000",
        "timeEpoch": 0,
    },
    "isBase64Encoded": False,
}


class Runtime(http.server.BaseHTTPRequestHandler):
    """State lives on the server: one server, one process, one sample."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        s = self.server.state
        if not self.path.endswith("/runtime/invocation/next"):
            self.send_error(404)
            return
        if "next" in s:
            # One invocation per process: hold the second request until killed.
            s["done"].wait(30)
            self.send_error(500)
            return
        s["next"] = time.perf_counter()
        body = json.dumps(EVENT).encode()
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                         "arn:aws:lambda:us-east-1:123456789012:function:query")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-0-0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        s = self.server.state
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        s["answer"] = time.perf_counter()
        s["error"] = "/error" in self.path
        s["body"] = body
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        s["done"].set()


env = dict(os.environ,
           AWS_LAMBDA_FUNCTION_NAME="query", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
           AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024", AWS_LAMBDA_LOG_GROUP_NAME="bench",
           AWS_LAMBDA_LOG_STREAM_NAME="bench", AWS_ACCESS_KEY_ID="test",
           AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
           AWS_ENDPOINT_URL=endpoint, HEPOP_LAKE=lake, RUST_LOG="warn")

inits, firsts = [], []
for i in range(samples):
    # A runtime API per sample: a killed process's last request, still queued
    # on the old port, must not be taken for the next process's first.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    server.state = {"done": threading.Event()}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{server.server_address[1]}"
    start = time.perf_counter()
    p = subprocess.Popen([bootstrap], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not server.state["done"].wait(60):
        p.kill()
        sys.exit(f"no answer within 60 s: {p.stderr.read().decode()[-2000:]}")
    p.kill()
    p.wait()
    server.shutdown()
    server.server_close()
    s = server.state
    answer = json.loads(s["body"])
    if s["error"] or answer.get("statusCode") != 200:
        sys.exit(f"the query failed: {s['body'][:500]!r}")
    init, first = (s["next"] - start) * 1e3, (s["answer"] - s["next"]) * 1e3
    inits.append(init)
    firsts.append(first)
    print(f"sample {i + 1}: init {init:.1f} ms, first query {first:.1f} ms")
print(f"query function cold start, medians of {samples}: init {statistics.median(inits):.1f} ms, "
      f"first query {statistics.median(firsts):.1f} ms, total {statistics.median(i + f for i, f in zip(inits, firsts)):.1f} ms")

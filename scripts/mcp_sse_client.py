#!/usr/bin/env python3
"""A minimal MCP client over the SSE transport (MCP 2024-11-05), standard
library only: the test of examples/06_mcp_sse.lua (scripts/test-examples.sh).

    mcp_sse_client.py http://127.0.0.1:PORT/sse

Opens the event stream, reads the `endpoint` event, POSTs initialize,
notifications/initialized, tools/list and two tools/call requests, and
prints each response as it arrives on the stream."""
import http.client
import json
import sys
import urllib.parse


def events(resp):
    """Yields (event, data) from a text/event-stream response."""
    event, data = "message", []
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def main():
    url = urllib.parse.urlsplit(sys.argv[1])
    stream = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    stream.request("GET", url.path, headers={"Accept": "text/event-stream"})
    resp = stream.getresponse()
    assert resp.status == 200, resp.status
    assert resp.getheader("Content-Type") == "text/event-stream"
    ev = events(resp)
    kind, endpoint = next(ev)
    assert kind == "endpoint", kind
    print("endpoint", endpoint.split("?")[0])
    post = http.client.HTTPConnection(url.hostname, url.port, timeout=10)

    def send(msg):
        post.request("POST", endpoint, body=json.dumps(msg),
                     headers={"Content-Type": "application/json"})
        r = post.getresponse()
        r.read()
        assert r.status == 202, r.status
        if "id" not in msg:
            return None
        kind, data = next(ev)
        assert kind == "message", kind
        reply = json.loads(data)
        assert reply["jsonrpc"] == "2.0" and reply["id"] == msg["id"], reply
        return reply

    r = send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2024-11-05", "capabilities": {},
                         "clientInfo": {"name": "test", "version": "1"}}})
    print("initialize", r["result"]["protocolVersion"], r["result"]["serverInfo"]["name"])
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    r = send({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    print("tools", ",".join(t["name"] for t in r["result"]["tools"]))
    r = send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
              "params": {"name": "search_notes", "arguments": {"query": "coroutine"}}})
    print("search coroutine:", r["result"]["content"][0]["text"].replace("\n", " | "))
    r = send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
              "params": {"name": "search_notes", "arguments": {"query": "nothingmatches"}}})
    print("search nothingmatches:", r["result"]["content"][0]["text"])
    r = send({"jsonrpc": "2.0", "id": 5, "method": "no/such"})
    print("unknown method error", r["error"]["code"])
    r = send({"jsonrpc": "2.0", "id": 6, "method": "ping"})
    print("ping", json.dumps(r["result"]))
    post.request("POST", endpoint, body="{not json")
    bad = post.getresponse()
    print("malformed json", bad.status, json.loads(bad.read())["error"]["code"])
    print("done")


main()

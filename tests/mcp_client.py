#!/usr/bin/env python3
"""Drives `sonde mcp RECORDING` with the official Python MCP SDK, as an
assistant's client would: the handshake, the tool list, every tool with
sensible arguments (answers validated against each tool's outputSchema with
jsonschema, Draft 2020-12), then bad arguments, which must come back as tool
errors (isError) that say how to fix them, and a huge time range, which must
be answered in bounded time.

    python3 tests/mcp_client.py SONDE_BIN RECORDING

On success prints one JSON summary line on stdout and exits 0; otherwise
prints every failure on stderr and exits 1. `cargo xtask test` installs the
pinned SDK (xtask's ensure_python_mcp): the attribute names used here
(structured_content, is_error, output_schema, ...) are those of SDK 2.x;
1.x spelled several of them differently.
"""

import asyncio
import importlib.metadata
import json
import math
import re
import sys
import time

import anyio
from jsonschema import Draft202012Validator
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

TOOLS = {
    "describe_recording",
    "list_metrics",
    "query",
    "detect_anomalies",
    "what_changed",
    "correlate",
}
# The whole run, handshake to shutdown; a hung server fails the test
# instead of hanging CI.
TOTAL_TIMEOUT = 120
# One call; the huge-range calls must answer well within it.
CALL_TIMEOUT = 60
TARGET = "sum(rate(syscalls[5s]))"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class Run:
    """Collects failures so that one run reports all of them."""

    def __init__(self):
        self.session = None
        self.failures = []
        self.calls = 0
        self.tools = {}

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    async def call(self, name, args):
        """One tools/call; None when the call itself failed (recorded)."""
        self.calls += 1
        label = f"{name} {json.dumps(args)}"
        tool = self.tools.get(name)
        # Our own arguments must fit the published inputSchema, or a wrong
        # argument name here would test nothing.
        if tool is not None:
            for e in schema_errors(tool.input_schema, args):
                self.failures.append(f"{label}: our arguments do not fit inputSchema: {e}")
        try:
            return await self.session.call_tool(name, args, read_timeout_seconds=CALL_TIMEOUT)
        except Exception as e:
            # The SDK raises RuntimeError when structuredContent is missing
            # or does not fit the outputSchema; a timeout or a JSON-RPC
            # error also lands here.
            self.failures.append(f"{label}: call failed: {type(e).__name__}: {e}")
            return None

    async def ok(self, name, args):
        """A call that must succeed: its structuredContent, validated by us
        against the tool's outputSchema; None on failure (recorded)."""
        label = f"{name} {json.dumps(args)}"
        r = await self.call(name, args)
        if r is None:
            return None
        if not self.check(not r.is_error, f"{label}: isError: {text_of(r)}"):
            return None
        sc = r.structured_content
        if not self.check(isinstance(sc, dict), f"{label}: no structuredContent object"):
            return None
        errors = schema_errors(self.tools[name].output_schema, sc)
        for e in errors:
            self.failures.append(f"{label}: structuredContent does not fit outputSchema: {e}")
        # The spec asks for the same JSON as text too, for older clients.
        for t in (c.text for c in r.content if c.type == "text"):
            try:
                same = json.loads(t) == sc
            except ValueError:
                same = False
            self.check(same, f"{label}: text content is not structuredContent as JSON: {t[:200]}")
        return None if errors else sc

    async def error(self, name, args, must_contain):
        """A call that must come back as a tool error naming each of
        must_contain; returns its text."""
        label = f"{name} {json.dumps(args)}"
        r = await self.call(name, args)
        if r is None:
            return ""
        text = text_of(r)
        if self.check(r.is_error, f"{label}: expected isError, got a result: {text[:300]}"):
            for s in must_contain:
                self.check(s in text, f"{label}: error {text!r} does not contain {s!r}")
        return text


def text_of(result):
    return "\n".join(c.text for c in result.content if c.type == "text")


def schema_errors(schema, instance):
    """Draft 2020-12 validation errors, readable, at most 5."""
    if schema.get("$schema", DRAFT_2020_12) != DRAFT_2020_12:
        return [f"$schema is {schema['$schema']}, not Draft 2020-12"]
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    return [f"at /{'/'.join(map(str, e.path))}: {e.message}"[:300] for e in errors[:5]]


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


async def handshake(run, session):
    init = await session.initialize()
    run.check(
        init.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS,
        f"initialize: unknown protocolVersion {init.protocol_version!r}",
    )
    run.check(init.server_info.name == "sonde", f"initialize: serverInfo.name is {init.server_info.name!r}")
    run.check(init.capabilities.tools is not None, "initialize: no tools capability")
    return init.protocol_version


async def list_tools(run, session):
    tools = (await session.list_tools()).tools
    run.tools = {t.name: t for t in tools}
    names = [t.name for t in tools]
    run.check(sorted(names) == sorted(TOOLS), f"tools/list: {sorted(names)}, expected {sorted(TOOLS)}")
    for t in tools:
        run.check(bool(t.description), f"{t.name}: no description")
        run.check(t.output_schema is not None, f"{t.name}: no outputSchema")
        ro = t.annotations.read_only_hint if t.annotations else None
        run.check(ro is True, f"{t.name}: annotations.readOnlyHint is {ro!r}")
        for s, what in ((t.input_schema, "inputSchema"), (t.output_schema, "outputSchema")):
            if s is not None:
                try:
                    Draft202012Validator.check_schema(s)
                except Exception as e:
                    run.failures.append(f"{t.name}: {what} is no Draft 2020-12 schema: {e}")
    return len(tools)


async def tools(run):
    d = await run.ok("describe_recording", {})
    if d:
        iv = d["interval_seconds"]
        run.check(finite(iv) and iv > 0, f"describe_recording: interval_seconds {iv!r}")
        run.check(len(d["samplers"]) > 0, "describe_recording: no samplers")
        run.check(d["samples"] > 0 and d["series"] > 0, "describe_recording: no samples or series")
        run.check(d["start"] <= d["end"], f"describe_recording: start {d['start']} after end {d['end']}")

    m = await run.ok("list_metrics", {"filter": "^syscall"})
    if m:
        names = [x["name"] for x in m["metrics"]]
        run.check("syscalls" in names, f"list_metrics ^syscall: no `syscalls` in {names}")
        for x in m["metrics"]:
            run.check(x["name"].startswith("syscall"), f"list_metrics ^syscall: {x['name']} does not match")
            run.check(bool(x["unit"]) and bool(x["help"]), f"list_metrics: {x['name']} has no unit or help")
            run.check(x["series"] > 0, f"list_metrics: {x['name']} has no series")
    m = await run.ok("list_metrics", {"limit": 2})
    if m:
        run.check(len(m["metrics"]) <= 2, f"list_metrics limit 2: {len(m['metrics'])} metrics")
        run.check(m["truncated"] == (m["total"] > 2), f"list_metrics limit 2: truncated {m['truncated']}, total {m['total']}")

    for args, cap in (({"expr": TARGET, "max_points": 5}, 5), ({"expr": TARGET}, 60)):
        q = await run.ok("query", args)
        if q:
            run.check(len(q["series"]) == 1, f"query {args}: {len(q['series'])} series, expected 1")
            for s in q["series"]:
                pts = s["points"]
                run.check(0 < len(pts) <= cap, f"query {args}: {len(pts)} points, max_points {cap}")
                run.check(all(len(p) in (2, 4) and all(map(finite, p)) for p in pts), f"query {args}: bad points {pts[:3]}")
                run.check(all(map(finite, s["stats"].values())), f"query {args}: stats {s['stats']}")
    q = await run.ok("query", {"expr": "rate(syscalls[5s])", "max_series": 2, "step": "1s"})
    if q:
        run.check(len(q["series"]) <= 2, f"query max_series 2: {len(q['series'])} series")
        run.check(q["series_total"] >= len(q["series"]), "query: series_total below the series given")
        if q["series_total"] > 2:
            run.check(q["truncated"], f"query max_series 2: {q['series_total']} series but not truncated")
        run.check(q["step_seconds"] == 1, f"query step 1s: step_seconds {q['step_seconds']}")

    for args in ({}, {"filter": "syscall", "top": 3}):
        a = await run.ok("detect_anomalies", args)
        if a:
            f = a["findings"]
            run.check(len(f) <= args.get("top", 10), f"detect_anomalies {args}: {len(f)} findings")
            run.check([x["rank"] for x in f] == list(range(1, len(f) + 1)), f"detect_anomalies {args}: ranks {[x['rank'] for x in f]}")
            if "filter" in args:
                run.check(all("syscall" in x["family"] for x in f), f"detect_anomalies {args}: families {[x['family'] for x in f]}")

    c = await run.ok("what_changed", {"start": "end-10s", "end": "end"})
    if c:
        w, b = c["window"], c["baseline"]
        run.check(abs(w["seconds"] - 10) < 1e-6, f"what_changed end-10s..end: window of {w['seconds']} s")
        run.check(b["to_unix"] <= w["from_unix"], f"what_changed: baseline {b} not before window {w}")
        run.check(len(c["changes"]) <= 10, f"what_changed: {len(c['changes'])} changes")

    r = await run.ok("correlate", {"metric": TARGET})
    if r:
        run.check(r["target"] == TARGET, f"correlate: target {r['target']!r}")
        run.check(len(r["correlations"]) <= 10, f"correlate: {len(r['correlations'])} correlations")
        run.check(all(abs(x["r"]) <= 1 + 1e-9 for x in r["correlations"]), f"correlate: |r| > 1 in {[x['r'] for x in r['correlations']]}")


async def errors(run):
    # Each error must say how to fix it, so an assistant can retry alone.
    await run.error("query", {"expr": "rate(syscalls[5s"}, ["e.g."])
    await run.error("query", {"expr": "sum(rate(no_such_metric_xyz[5s]))"}, ["no_such_metric_xyz"])
    await run.error("what_changed", {"start": "soon"}, ["soon"])
    await run.error("list_metrics", {"filter": "("}, ["e.g."])

    # From 1970 to now: a bounded answer or a tool error, quickly, and the
    # server still answering afterwards.
    for name, args in (
        ("query", {"expr": TARGET, "start": "0", "end": "now"}),
        ("detect_anomalies", {"start": "0", "end": "now"}),
        ("correlate", {"metric": TARGET, "start": "0", "end": "now"}),
    ):
        t0 = time.monotonic()
        r = await run.call(name, args)
        took = time.monotonic() - t0
        run.check(took < 30, f"{name} {args}: took {took:.1f} s")
        if r is not None and not r.is_error and name == "query":
            sc = r.structured_content or {}
            for s in sc.get("series", []):
                run.check(len(s["points"]) <= 60, f"query {args}: {len(s['points'])} points")
    await run.ok("describe_recording", {})


async def main(run, sonde, recording):
    params = StdioServerParameters(command=sonde, args=["mcp", recording])
    with anyio.fail_after(TOTAL_TIMEOUT):
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                run.session = session
                protocol = await handshake(run, session)
                n = await list_tools(run, session)
                await tools(run)
                await errors(run)
    return {"tools": n, "calls": run.calls, "protocol": protocol, "sdk": importlib.metadata.version("mcp")}


def leaves(e):
    """The exceptions inside (anyio task groups wrap them in groups)."""
    if isinstance(e, BaseExceptionGroup):
        return [x for sub in e.exceptions for x in leaves(sub)]
    return [e]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: mcp_client.py SONDE_BIN RECORDING")
    sdk = importlib.metadata.version("mcp")
    if not re.match(r"2\.", sdk):
        sys.exit(f"mcp_client.py: needs the mcp SDK 2.x (installed: {sdk}); run `cargo xtask test` or see xtask's ensure_python_mcp")
    run = Run()
    try:
        summary = asyncio.run(main(run, sys.argv[1], sys.argv[2]))
    except BaseException as e:
        # What failed before the session broke, then why it broke.
        for f in run.failures:
            print(f"FAIL {f}", file=sys.stderr)
        for x in leaves(e):
            kind = f"timed out after {TOTAL_TIMEOUT} s" if isinstance(x, TimeoutError) else f"{type(x).__name__}: {x}"
            print(f"mcp_client.py: the session failed after {run.calls} calls: {kind}", file=sys.stderr)
        sys.exit(1)
    if run.failures:
        for f in run.failures:
            print(f"FAIL {f}", file=sys.stderr)
        print(f"mcp_client.py: {len(run.failures)} failures in {run.calls} calls", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))

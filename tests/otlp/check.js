// check.js -- reads OTLP/JSON export requests, one a line (agentrun's store:otlp),
// and decodes each with the OpenTelemetry project's generated protobuf
// definitions (ExportTraceServiceRequest of opentelemetry-proto, as shipped in
// @opentelemetry/otlp-transformer): every field must be one the proto knows,
// of the type it has there, and survive a protobuf encode/decode unchanged.
// Then checks the spans' names, parents, times and attributes. Exits 1 on the
// first disagreement.
'use strict';
const fs = require('fs');
const assert = require('assert');
const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;

const ID_FIELDS = new Set(['traceId', 'spanId', 'parentSpanId']);

// OTLP/JSON writes ids as hex; the proto's bytes fields take bytes.
function toProtoShape(v, key) {
  if (Array.isArray(v)) return v.map((x) => toProtoShape(x));
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = toProtoShape(x, k);
    return out;
  }
  if (ID_FIELDS.has(key)) {
    assert.match(v, /^[0-9a-f]+$/, `${key} must be lowercase hex`);
    return Buffer.from(v, 'hex');
  }
  return v;
}

function fromProtoShape(v, key) {
  if (Array.isArray(v)) return v.map((x) => fromProtoShape(x));
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = fromProtoShape(x, k);
    return out;
  }
  if (ID_FIELDS.has(key)) return Buffer.from(v, 'base64').toString('hex');
  return v;
}

function attrs(list) {
  const t = {};
  for (const a of list || []) {
    const v = a.value;
    t[a.key] = v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue;
  }
  return t;
}

const lines = fs.readFileSync(process.argv[2] || 0, 'utf8').split('\n').filter((l) => l.length);
assert.ok(lines.length > 0, 'no request to check');
let spans = 0;
lines.forEach((line, i) => {
  const where = `line ${i + 1}`;
  const json = JSON.parse(line);
  const msg = Request.fromObject(toProtoShape(json));
  const bytes = Request.encode(msg).finish();
  const back = fromProtoShape(Request.toObject(Request.decode(bytes), { longs: String, enums: Number, bytes: String }));
  // a field the proto does not know, or of another type, would not come back as it was
  assert.deepStrictEqual(back, json, `${where}: the request changes through the protobuf definitions`);

  const rs = back.resourceSpans;
  assert.strictEqual(rs.length, 1, `${where}: one resource`);
  const service = attrs(rs[0].resource.attributes)['service.name'];
  assert.ok(service, `${where}: service.name`);
  const list = rs[0].scopeSpans[0].spans;
  const rootSpan = list[0];
  assert.strictEqual(rootSpan.traceId.length, 32, `${where}: a 16-byte trace id`);
  assert.strictEqual(rootSpan.spanId.length, 16, `${where}: an 8-byte span id`);
  assert.strictEqual(rootSpan.parentSpanId, undefined, `${where}: the root has no parent`);
  assert.strictEqual(rootSpan.name, `invoke_agent ${service}`, `${where}: the root span's name`);
  const ra = attrs(rootSpan.attributes);
  assert.strictEqual(ra['gen_ai.operation.name'], 'invoke_agent');
  assert.strictEqual(ra['gen_ai.agent.name'], service);
  assert.ok(ra['gen_ai.agent.id'], `${where}: gen_ai.agent.id`);
  assert.ok(BigInt(rootSpan.endTimeUnixNano) >= BigInt(rootSpan.startTimeUnixNano), `${where}: root times`);
  if (ra['agentrun.run.status'] === 'failed') {
    assert.strictEqual(rootSpan.status.code, 2, `${where}: a failed run's status is ERROR`);
    assert.ok(ra['error.type'], `${where}: error.type`);
  }
  const ids = new Set([rootSpan.spanId]);
  for (const s of list.slice(1)) {
    assert.strictEqual(s.traceId, rootSpan.traceId, `${where}: one trace`);
    assert.strictEqual(s.parentSpanId, rootSpan.spanId, `${where}: steps are the root's children`);
    assert.ok(!ids.has(s.spanId), `${where}: span ids are distinct`);
    ids.add(s.spanId);
    assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), `${where}: ${s.name} times`);
    const a = attrs(s.attributes);
    if (a['agentrun.step.kind'] === 'llm') {
      assert.strictEqual(a['gen_ai.operation.name'], 'chat');
      assert.strictEqual(s.name, a['gen_ai.request.model'] ? `chat ${a['gen_ai.request.model']}` : 'chat');
    } else if (a['agentrun.step.kind'] === 'tool') {
      assert.strictEqual(a['gen_ai.operation.name'], 'execute_tool');
      assert.strictEqual(s.name, a['gen_ai.tool.name'] ? `execute_tool ${a['gen_ai.tool.name']}` : 'execute_tool');
    } else {
      assert.strictEqual(s.name, a['agentrun.step.kind']);
    }
  }
  spans += list.length;
});
console.log(`otlp: ${lines.length} requests, ${spans} spans decoded with the OpenTelemetry protobuf definitions`);

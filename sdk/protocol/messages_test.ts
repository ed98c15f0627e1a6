import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { encode } from "cbor2";
import {
  encodeResult,
  encodeTask,
  InvalidMessageError,
  type Message,
  packArgs,
  packBuffers,
  packMessage,
  packResultBatch,
  PROTOCOL_VERSION,
  serialize,
  type TaskTransition,
  unpackMessage,
  UnrecognizedProtocolVersion,
} from "./mod.ts";

const BIG_TS = 1_670_000_000_123_456_789n; // above 2**53: a double would round it
const transitions: TaskTransition[] = [
  { timestamp: BIG_TS, state: "waiting-for-nodes", actor: "interchange" },
  { timestamp: BIG_TS + 1n, state: "running", actor: "manager" },
  { timestamp: 2n ** 63n + 7n, state: "execution-end", actor: "worker" },
];

const examples: Message[] = [
  {
    message_type: "task",
    data: {
      task_id: "7c0e0f3a-0000-4000-8000-000000000001",
      container_id: null,
      task_buffer: packBuffers([serialize((x: number) => x)]) + packArgs(["🙂", 1n]),
    },
  },
  {
    message_type: "task",
    data: { task_id: "t2", container_id: "c-1", task_buffer: "" },
  },
  {
    message_type: "result",
    data: { task_id: "t1", data: serialize(42), error_details: null, task_statuses: transitions },
  },
  {
    message_type: "result",
    data: {
      task_id: "t1",
      data: serialize({ name: "Error", message: "x", stack: "Error: x" }),
      error_details: { code: "RemoteExecutionError", user_message: "An error occurred" },
      task_statuses: null,
    },
  },
  {
    message_type: "ep_status_report",
    data: {
      endpoint_id: "e1",
      global_state: { managers: 1, total_workers: 8, outstanding_tasks: { RAW: 1 } },
      task_statuses: { t1: transitions, "10": [], "2": transitions.slice(0, 1) },
    },
  },
  { message_type: "task_transition", data: { task_id: "t1", transitions } },
  { message_type: "task_cancel", data: { task_id: "t1" } },
  { message_type: "command", data: { command: "shutdown", args: { graceful: true, after: 5 } } },
];

Deno.test("packMessage() and unpackMessage() round-trip every message type", () => {
  const seen = new Set<string>();
  for (const msg of examples) {
    const bytes = packMessage(msg);
    assert.ok(bytes instanceof Uint8Array);
    assert.equal(bytes[0], PROTOCOL_VERSION);
    assert.deepEqual(unpackMessage(bytes), msg);
    seen.add(msg.message_type);
  }
  assert.equal(seen.size, 6);
});

Deno.test("unpackMessage() keeps nanosecond timestamps above 2**53 exact", () => {
  const back = unpackMessage(packMessage(examples[5]!));
  assert.equal(back.message_type, "task_transition");
  if (back.message_type !== "task_transition") return;
  assert.equal(typeof back.data.transitions[0]!.timestamp, "bigint");
  assert.equal(back.data.transitions[0]!.timestamp, 1_670_000_000_123_456_789n);
  assert.equal(back.data.transitions[1]!.timestamp - back.data.transitions[0]!.timestamp, 1n);
  assert.equal(back.data.transitions[2]!.timestamp, 2n ** 63n + 7n);
});

Deno.test("unpackMessage() accepts a Buffer and a view into a bigger buffer", () => {
  const bytes = packMessage(examples[6]!);
  assert.deepEqual(unpackMessage(Buffer.from(bytes)), examples[6]);
  const padded = new Uint8Array(bytes.length + 8);
  padded.set(bytes, 4);
  assert.deepEqual(unpackMessage(padded.subarray(4, 4 + bytes.length)), examples[6]);
});

Deno.test("unpackMessage() rejects an unknown version byte", () => {
  const bytes = packMessage(examples[6]!);
  bytes[0] = 2;
  assert.throws(() => unpackMessage(bytes), (err: unknown) => {
    assert.ok(err instanceof UnrecognizedProtocolVersion);
    assert.equal(err.version, 2);
    assert.match(err.message, /unrecognized protocol version 2 \(expected 1\)/);
    return true;
  });
  // funcX's JSON envelope ("{" after the version byte) is not CBOR.
  const json = new TextEncoder().encode(
    '\x01{"message_type":"task_cancel","data":{"task_id":"t"}}',
  );
  assert.throws(() => unpackMessage(json), InvalidMessageError);
  assert.throws(() => unpackMessage(new Uint8Array(0)), /empty/);
});

function raw(envelope: unknown): Uint8Array {
  const body = encode(envelope, { collapseBigInts: false });
  const out = new Uint8Array(body.length + 1);
  out[0] = 1;
  out.set(body, 1);
  return out;
}

function rejects(envelope: unknown, message: string | RegExp): void {
  assert.throws(() => unpackMessage(raw(envelope)), (err: unknown) => {
    assert.ok(err instanceof InvalidMessageError, String(err));
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

Deno.test("unpackMessage() names a missing or mistyped field", () => {
  rejects(
    { message_type: "result", data: { data: "cb\nAQ==", error_details: null } },
    'Invalid "result" message: field "task_id" must be a string',
  );
  rejects(
    { message_type: "task", data: { task_id: 5, task_buffer: "" } },
    'Invalid "task" message: field "task_id" must be a string',
  );
  rejects(
    { message_type: "task", data: { task_id: "t", container_id: 3, task_buffer: "" } },
    'Invalid "task" message: field "container_id" must be a string or null',
  );
  rejects(
    { message_type: "result", data: { task_id: "t", data: "", error_details: { code: "x" } } },
    'Invalid "result" message: field "error_details.user_message" must be a string',
  );
  rejects(
    {
      message_type: "task_transition",
      data: { task_id: "t", transitions: [{ timestamp: 1.5, state: "running", actor: "worker" }] },
    },
    /field "transitions\[0\]\.timestamp" must be an integer/,
  );
  rejects(
    {
      message_type: "task_transition",
      data: { task_id: "t", transitions: [{ timestamp: 1n, state: "bogus", actor: "worker" }] },
    },
    /field "transitions\[0\]\.state" must be a task state/,
  );
  rejects(
    { message_type: "ep_status_report", data: { endpoint_id: "e", task_statuses: {} } },
    'Invalid "ep_status_report" message: field "global_state" must be an object',
  );
  rejects(
    { message_type: "command", data: { command: "stop", args: [1] } },
    'Invalid "command" message: field "args" must be an object',
  );
  rejects({ message_type: "task_cancel" }, /field "data" must be an object/);
  rejects({ message_type: "launch_missiles", data: {} }, /unknown message_type "launch_missiles"/);
  rejects({ data: {} }, /unknown message_type \(undefined\)/);
  rejects([1, 2], /not a \{message_type, data\} map/);
});

Deno.test("unpackMessage() ignores unknown fields and defaults missing nullable ones", () => {
  const msg = unpackMessage(raw({
    message_type: "result",
    extra: true,
    data: { task_id: "t", data: "x", surplus: { a: 1 } },
  }));
  assert.deepEqual(msg, {
    message_type: "result",
    data: { task_id: "t", data: "x", error_details: null, task_statuses: null },
  });
  // Safe-integer timestamps from another encoder are widened to bigint.
  const t = unpackMessage(raw({
    message_type: "task_transition",
    data: { task_id: "t", transitions: [{ timestamp: 5, state: "running", actor: "manager" }] },
  }));
  assert.equal(t.message_type === "task_transition" && t.data.transitions[0]!.timestamp, 5n);
  // funcX-common 0.0.18's "ep_status_report" spelling of global_state.
  const legacy = unpackMessage(raw({
    message_type: "ep_status_report",
    data: { endpoint_id: "e", ep_status_report: { managers: 2 }, task_statuses: {} },
  }));
  assert.equal(
    legacy.message_type === "ep_status_report" && legacy.data.global_state.managers,
    2,
  );
});

Deno.test("packMessage() refuses a malformed message with a TypeError", () => {
  assert.throws(
    () => packMessage({ message_type: "task_cancel", data: {} } as unknown as Message),
    /^TypeError: Invalid "task_cancel" message: field "task_id" must be a string$/,
  );
  assert.throws(
    () => packMessage({ message_type: "nope", data: {} } as unknown as Message),
    TypeError,
  );
});

Deno.test("result_batch round-trips and names the bad element's field", () => {
  const results = [
    { task_id: "a", data: "js\n1", error_details: null, task_statuses: null },
    {
      task_id: "b",
      data: "js\n2",
      error_details: { code: "RemoteExecutionError", user_message: "boom" },
      task_statuses: [{
        timestamp: 2n ** 62n + 1n,
        state: "execution-end" as const,
        actor: "worker" as const,
      }],
    },
  ];
  const back = unpackMessage(packMessage({ message_type: "result_batch", data: { results } }));
  assert.equal(back.message_type, "result_batch");
  assert.deepEqual(back.data, { results });
  assert.throws(
    () =>
      packMessage({
        message_type: "result_batch",
        data: { results: [results[0]!, { task_id: 3 } as never] },
      }),
    /results\[1\]\.task_id/,
  );
});

Deno.test("task and result: the multi-user fields round-trip, and messages without them encode as before", () => {
  const plain = { task_id: "t1", container_id: null, task_buffer: "x" };
  const full = {
    ...plain,
    function_id: "f1",
    user: "alice",
    user_endpoint_config: { partition: "debug", workers: 2 },
  };
  const back = unpackMessage(packMessage({ message_type: "task", data: full }));
  assert.deepEqual(back, { message_type: "task", data: full });
  // An old task (no new fields) keeps its exact bytes: encodeTask writes only what is present.
  assert.deepEqual(encodeTask(plain), encodeTask({ ...plain }));
  assert.equal(encodeTask(full).byteLength > encodeTask(plain).byteLength, true);
  const oldBack = unpackMessage(packMessage({ message_type: "task", data: plain }));
  assert.equal("user" in oldBack.data, false);
  assert.throws(
    () =>
      packMessage({ message_type: "task", data: { ...plain, user_endpoint_config: 3 } as never }),
    /field "user_endpoint_config" must be an object/,
  );
  const result = { task_id: "t1", data: "js\n1", error_details: null, task_statuses: null };
  const retried = unpackMessage(packResultBatch([encodeResult({ ...result, attempts: 2 })]));
  assert.equal(retried.message_type === "result_batch" && retried.data.results[0]?.attempts, 2);
  const once = unpackMessage(packResultBatch([encodeResult(result)]));
  assert.equal(once.message_type === "result_batch" && "attempts" in once.data.results[0]!, false);
  assert.throws(() => encodeResult({ ...result, attempts: 0 }), /field "attempts"/);
});

/**
 * Seeded generators of hostile input for the live fuzz harness (`_fuzz_run.ts`): scripts of raw yamux
 * frames after TLS, JSON-RPC bodies on the control stream, `authenticate` and `register_proxies`
 * parameters, and data-stream headers. A script is one connection; each input in it is a case. Script
 * `index` of seed `seed` is always the same value, so any script of a run can be replayed alone.
 *
 * Addresses are chosen so nothing is ever bound outside loopback: publish addresses are loopback
 * literals, host names, non-local or malformed strings, never a wildcard.
 *
 * @module
 */

import fc from "fast-check";

/** One raw yamux frame (fields unchecked) and how many times it is sent back to back. */
export interface RawFrame {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  length: number;
  /** Bytes sent after the header (may be fewer or more than `length`). */
  payload: Uint8Array;
  /** Times the frame is sent (a pipelined flood when large); `streamStep` is added to the id each time. */
  repeat: number;
  streamStep: number;
}

/** What precedes the mutated frames of a raw yamux script. */
export type Preamble = "none" | "syn" | "auth" | "auth+register";

/** A control-stream body: raw bytes behind a (possibly lying) u32 length prefix. */
export interface RpcBody {
  /** The body bytes sent. */
  body: Uint8Array;
  /** The declared length; when not `body.length` the frame is oversized or truncated. */
  declaredLength: number;
}

/** One `register_proxies` call, sent `pipelined` times at once. */
export interface RegisterCall {
  params: unknown;
  pipelined: number;
}

/** How a session ends. */
export type Ending = "goaway" | "abrupt" | "linger";

/** What the fuzz client does with a data stream the server opens for an outside connection. */
export type DataStreamMove = "echo" | "reset" | "close" | "ignore" | "garbage";

/** One connection's worth of hostile input. */
export type FuzzScript =
  | { kind: "yamux"; preamble: Preamble; frames: RawFrame[]; flips: Array<[number, number]>; readMs: number }
  | { kind: "rpc"; authFirst: boolean; bodies: RpcBody[]; ending: Ending }
  | { kind: "auth"; attempts: unknown[]; pipelined: boolean; ending: Ending }
  | {
    kind: "register";
    calls: RegisterCall[];
    outside: number;
    move: DataStreamMove;
    ending: Ending;
    lingerMs: number;
  }
  | { kind: "stream"; headers: Uint8Array[]; ending: Ending };

/** The number of cases (inputs) a script holds. */
export function caseCount(script: FuzzScript): number {
  switch (script.kind) {
    case "yamux":
      return script.frames.length + (script.flips.length > 0 ? 1 : 0);
    case "rpc":
      return script.bodies.length;
    case "auth":
      return script.attempts.length;
    case "register":
      return script.calls.length + script.outside;
    case "stream":
      return script.headers.length;
  }
}

/** Ports and keys a script generator needs to know. */
export interface FuzzTargets {
  /** The server's tunnel port (a reserved port to ask for). */
  tunnelPort: number;
  /** First port of the block the server lets fuzz clients publish (`allow_ports`). */
  blockStart: number;
  /** Ports in that block. */
  blockSize: number;
  /** The right auth key. */
  authKey: string;
}

const encoder = new TextEncoder();

/** Strings a hostile peer sends: control, bidi-override, lone surrogates, long, empty. */
export function nastyString(maxLength = 300): fc.Arbitrary<string> {
  const special = fc.constantFrom(
    "\u001b]0;pwned\u0007",
    "\u001b[2J",
    "\u202e",
    "\u2066",
    "\ud800",
    "\udfff",
    "\u0000",
    "\r\n",
    "\t",
    "\u00ad",
    "\ufeff",
    "..",
    "/",
    "%s%n",
  );
  return fc.oneof(
    { weight: 4, arbitrary: fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/) },
    {
      weight: 3,
      arbitrary: fc.array(fc.oneof(special, fc.string({ maxLength: 4 })), { maxLength: 8 }).map((p) =>
        p.join("")
      ),
    },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: maxLength }).map((n) => "x".repeat(n)) },
    { weight: 1, arbitrary: fc.constant("") },
  );
}

/** A JSON value of a wrong type for a field (numbers, objects, arrays, null, booleans). */
const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, -0, Number.MAX_SAFE_INTEGER + 2, [], {}),
  fc.jsonValue({ maxDepth: 3 }),
);

function publishAddr(): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 12, arbitrary: fc.constant("127.0.0.1") },
    {
      weight: 6,
      arbitrary: fc.constantFrom(
        "127.0.0.2",
        "::1",
        "[::1]",
        "localhost",
        "::ffff:127.0.0.1",
        "1.2.3.4",
        "192.0.2.1",
        "256.1.1.1",
        "127.0.0.1 ",
        " 127.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "slow.example",
        "fuzz.invalid",
        "\u202e127.0.0.1",
        "127.0.0.1\u0000",
        "",
        "x".repeat(300),
      ),
    },
    { weight: 2, arbitrary: fc.integer({ min: 1024, max: 65535 }).map((port) => `127.0.0.:${port}`) },
    { weight: 1, arbitrary: nastyString(300).map((text) => `h${text}.invalid`) },
    { weight: 1, arbitrary: wrongType },
  );
}

function port(targets: FuzzTargets): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 10, arbitrary: fc.constant(0) },
    {
      weight: 6,
      arbitrary: fc.integer({ min: targets.blockStart, max: targets.blockStart + targets.blockSize - 1 }),
    },
    {
      weight: 3,
      arbitrary: fc.constantFrom(targets.tunnelPort, 80, 1023, 65535, 65536, -1, 1.5, "8080", null, 2 ** 32),
    },
  );
}

/**
 * A mostly valid value of `base`'s shape with 0–2 fields corrupted by `corruptions` (a field set to
 * `undefined` is left out): a wholly random record would be refused at the first field every time.
 */
function corrupted(
  base: fc.Arbitrary<Record<string, unknown>>,
  corruptions: Record<string, fc.Arbitrary<unknown>>,
): fc.Arbitrary<Record<string, unknown>> {
  const keys = Object.keys(corruptions);
  const change = fc.constantFrom(...keys).chain((key) =>
    (corruptions[key] as fc.Arbitrary<unknown>).map((value) => [key, value] as const)
  );
  return fc.tuple(base, fc.array(change, { maxLength: 2 })).map(([record, changes]) => {
    const result: Record<string, unknown> = { ...record };
    for (const [key, value] of changes) {
      if (value === undefined) delete result[key];
      else result[key] = value;
    }
    return result;
  });
}

function proxySpec(targets: FuzzTargets): fc.Arbitrary<unknown> {
  const blockEnd = targets.blockStart + targets.blockSize - 1;
  const range = fc.oneof(
    fc.integer({ min: targets.blockStart, max: blockEnd }).chain((start) =>
      fc.integer({ min: start, max: blockEnd }).map((end) => ({ start, end }))
    ),
    fc.constant({ start: blockEnd, end: targets.blockStart }),
    fc.constant({ start: 1, end: 1023 }),
    fc.constant({ start: 0, end: 0 }),
    fc.constant({ start: -5, end: 70000 }),
    wrongType,
  );
  const base = fc.record({
    name: fc.integer({ min: 0, max: 5 }).map((n) => `p${n}`),
    proxy_type: fc.constant("tcp"),
    publish_addr: fc.oneof({ weight: 3, arbitrary: fc.constant("127.0.0.1") }, {
      weight: 1,
      arbitrary: publishAddr(),
    }),
    publish_port: port(targets),
    local_addr: fc.constant("127.0.0.1"),
    local_port: fc.integer({ min: 1, max: 65535 }),
  });
  const spec = corrupted(base, {
    name: fc.oneof(nastyString(200), wrongType),
    proxy_type: fc.constantFrom("sctp", "TCP", 6, null, undefined),
    publish_addr: fc.oneof(publishAddr(), fc.constant(undefined)),
    publish_port: fc.oneof(port(targets), fc.constant(undefined)),
    publish_port_range: range,
    fallback_to_system_port: fc.oneof(fc.boolean(), wrongType),
    local_addr: fc.oneof(nastyString(300), wrongType),
    local_port: fc.oneof(wrongType, fc.constantFrom(0, 65536, -1)),
    extra: wrongType,
  });
  return fc.oneof({ weight: 12, arbitrary: spec }, { weight: 1, arbitrary: wrongType });
}

function registerCall(targets: FuzzTargets): fc.Arbitrary<RegisterCall> {
  const bindRetry = fc.option(
    fc.oneof(
      fc.record({
        max_retries: fc.integer({ min: 0, max: 3 }),
        initial_delay_secs: fc.double({ min: 0.01, max: 0.5, noNaN: true }),
        max_delay_secs: fc.double({ min: 0.01, max: 1, noNaN: true }),
      }),
      wrongType,
    ),
    { nil: undefined, freq: 4 },
  );
  const params = fc.oneof(
    {
      weight: 12,
      arbitrary: fc.tuple(fc.array(proxySpec(targets), { minLength: 0, maxLength: 5 }), bindRetry).map((
        [proxies, bind_retry],
      ) => bind_retry === undefined ? { proxies } : { proxies, bind_retry }),
    },
    { weight: 1, arbitrary: wrongType },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 1000, max: 2000 }).map((n) => ({ proxies: new Array(n).fill(0) })),
    },
  );
  return fc.record({
    params,
    pipelined: fc.oneof({ weight: 6, arbitrary: fc.constant(1) }, {
      weight: 3,
      arbitrary: fc.integer({ min: 2, max: 8 }),
    }),
  });
}

function authParams(targets: FuzzTargets): fc.Arbitrary<unknown> {
  const base = fc.record({
    auth_key: fc.constant(targets.authKey),
    protocol_version: fc.constant(1),
    client_id: fc.stringMatching(/^fz[a-z0-9]{1,8}$/),
  });
  const params = corrupted(base, {
    auth_key: fc.oneof(
      fc.constantFrom("wrong-key-0123456789abcdef", targets.authKey + " ", "", undefined),
      fc.integer({ min: 4097, max: 100_000 }).map((n) => "k".repeat(n)),
      wrongType,
    ),
    protocol_version: fc.oneof(wrongType, fc.integer(), fc.constant(undefined)),
    client_id: fc.oneof(nastyString(400), wrongType, fc.constant(undefined)),
    client_version: fc.oneof(nastyString(100), wrongType),
  });
  return fc.oneof({ weight: 10, arbitrary: params }, { weight: 1, arbitrary: wrongType });
}

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

function rawFrame(): fc.Arbitrary<RawFrame> {
  return fc.record({
    version: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 1, max: 255 }),
    }),
    type: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 3 }) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 4, max: 255 }),
    }),
    flags: fc.oneof(
      { weight: 10, arbitrary: fc.subarray([1, 2, 4, 8]).map((bits) => bits.reduce((a, b) => a | b, 0)) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) },
    ),
    streamId: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(0, 1, 3, 5) },
      { weight: 2, arbitrary: fc.constantFrom(2, 4, 0xffff_ffff, 0x7fff_ffff) },
      { weight: 1, arbitrary: u32 },
    ),
    length: fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: 0, max: 64 }) },
      {
        weight: 3,
        arbitrary: fc.constantFrom(
          256 * 1024,
          256 * 1024 + 1,
          16 * 1024 * 1024,
          16 * 1024 * 1024 + 1,
          0x7fff_ffff,
          0xffff_ffff,
        ),
      },
      { weight: 1, arbitrary: u32 },
    ),
    payload: fc.uint8Array({ maxLength: 96 }),
    repeat: fc.oneof({ weight: 8, arbitrary: fc.constant(1) }, {
      weight: 2,
      arbitrary: fc.integer({ min: 2, max: 64 }),
    }, {
      weight: 1,
      arbitrary: fc.integer({ min: 200, max: 3000 }),
    }),
    streamStep: fc.constantFrom(0, 0, 2),
  });
}

function rpcBody(): fc.Arbitrary<RpcBody> {
  const method = fc.oneof(
    fc.constantFrom(
      "authenticate",
      "register_proxies",
      "heartbeat",
      "proxy_health",
      "push_exception",
      "rpc.discover",
      "__proto__",
      "constructor",
    ),
    nastyString(100),
  );
  const id = fc.oneof(
    fc.integer({ min: 1, max: 1000 }),
    fc.constantFrom(0, -1, 1e308, 2 ** 53 + 1, 1.5, "", null, true, [], {}),
    nastyString(500),
  );
  const message = fc.record(
    {
      jsonrpc: fc.oneof(fc.constant("2.0"), wrongType),
      id,
      method: fc.oneof({ weight: 5, arbitrary: method }, { weight: 1, arbitrary: wrongType }),
      params: fc.oneof(wrongType, fc.jsonValue({ maxDepth: 4 })),
      result: wrongType,
      error: wrongType,
    },
    { requiredKeys: ["jsonrpc"] },
  );
  const text = fc.oneof(
    { weight: 6, arbitrary: message.map((value) => JSON.stringify(value)) },
    { weight: 2, arbitrary: fc.array(message, { maxLength: 20 }).map((batch) => JSON.stringify(batch)) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value) ?? "null") },
    { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 100, max: 200_000 }), fc.constantFrom("[", '{"a":')).map((
        [depth, open],
      ) =>
        `{"jsonrpc":"2.0","id":7,"method":"heartbeat","params":${open.repeat(depth)}${
          (open === "[" ? "]" : "}").repeat(depth)
        }}`
      ),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "{not json",
        "null",
        '"',
        "[",
        '{"jsonrpc":"2.0","id":1,"method":"heartbeat","params":{"time_ms":1}}',
      ),
    },
  );
  const bytes = fc.oneof(
    { weight: 10, arbitrary: text.map((value) => encoder.encode(value)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
    { weight: 1, arbitrary: fc.constant(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])) },
  );
  return fc.tuple(
    bytes,
    fc.oneof(
      { weight: 12, arbitrary: fc.constant<"exact">("exact") },
      { weight: 1, arbitrary: fc.constant<"short">("short") },
      { weight: 1, arbitrary: fc.constantFrom(1024 * 1024 + 1, 0xffff_ffff, 2 ** 31) },
    ),
  ).map(([body, declared]) => ({
    body,
    declaredLength: declared === "exact" ? body.length : declared === "short" ? body.length + 10 : declared,
  }));
}

/**
 * Bytes at the start of a data stream: a version byte, a u16 length that may lie, a JSON body (a header
 * naming `knownProxy` or a hostile name, with hostile `peer_addr`/`conn_id`, or any text) and a tail.
 */
export function streamHeader(knownProxy = "p0"): fc.Arbitrary<Uint8Array> {
  const json = fc.oneof(
    fc.record({
      proxy: fc.oneof(fc.constant(knownProxy), nastyString(100)),
      peer_addr: nastyString(100),
      conn_id: fc.oneof(fc.integer(), wrongType),
    }).map((value) => JSON.stringify(value)),
    fc.string({ maxLength: 100 }),
  ).map((text) => encoder.encode(text));
  return fc.tuple(
    fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 255 }),
    }),
    json,
    fc.oneof({ weight: 4, arbitrary: fc.constant(-1) }, {
      weight: 1,
      arbitrary: fc.integer({ min: 0, max: 0xffff }),
    }),
    fc.uint8Array({ maxLength: 64 }),
  ).map(
    ([version, body, declared, tail]) => {
      const length = declared < 0 ? body.length : declared;
      const bytes = new Uint8Array(3 + body.length + tail.length);
      bytes[0] = version;
      new DataView(bytes.buffer).setUint16(1, length & 0xffff);
      bytes.set(body, 3);
      bytes.set(tail, 3 + body.length);
      return bytes;
    },
  );
}

const ending = fc.constantFrom<Ending>("goaway", "abrupt", "linger");

/** The arbitrary of one script. */
export function scriptArbitrary(targets: FuzzTargets): fc.Arbitrary<FuzzScript> {
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant<"yamux">("yamux"),
        preamble: fc.constantFrom<Preamble>("none", "syn", "auth", "auth", "auth+register"),
        frames: fc.array(rawFrame(), { minLength: 1, maxLength: 6 }),
        flips: fc.array(fc.tuple(fc.nat({ max: 400 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
        readMs: fc.integer({ min: 20, max: 250 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant<"rpc">("rpc"),
        authFirst: fc.boolean(),
        bodies: fc.array(rpcBody(), { minLength: 1, maxLength: 12 }),
        ending,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant<"auth">("auth"),
        attempts: fc.array(authParams(targets), { minLength: 1, maxLength: 6 }),
        pipelined: fc.boolean(),
        ending,
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant<"register">("register"),
        calls: fc.array(registerCall(targets), { minLength: 1, maxLength: 6 }),
        outside: fc.integer({ min: 0, max: 3 }),
        move: fc.constantFrom<DataStreamMove>("echo", "reset", "close", "ignore", "garbage"),
        ending,
        lingerMs: fc.integer({ min: 0, max: 400 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant<"stream">("stream"),
        headers: fc.array(streamHeader(), { minLength: 1, maxLength: 8 }),
        ending,
      }),
    },
  );
}

/** Script `index` of the run seeded with `seed`: always the same value for the same pair. */
export function scriptAt(arbitrary: fc.Arbitrary<FuzzScript>, seed: number, index: number): FuzzScript {
  const [script] = fc.sample(arbitrary, { seed: (seed + Math.imul(index, 0x9e3779b1)) | 0, numRuns: 1 });
  if (!script) throw new Error(`fast-check produced no script for seed ${seed} index ${index}`);
  return script;
}

import assert from "node:assert/strict";
import {
  allowedAddresses,
  connectDestination,
  DestinationError,
  forbiddenAddressKind,
  resolveHost,
} from "./forward_destination.ts";

Deno.test("forbiddenAddressKind refuses every private, loopback, link-local and special IPv4 network", () => {
  const cases: [string, string | null][] = [
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.1", "private"],
    ["100.64.0.1", "private"],
    ["100.128.0.1", null],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["169.254.169.254", "link-local"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["172.32.0.1", null],
    ["192.168.1.1", "private"],
    ["192.0.0.8", "reserved"],
    ["198.18.0.1", "private"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "reserved"],
    ["8.8.8.8", null],
    ["93.184.215.14", null],
  ];
  for (const [address, kind] of cases) assert.equal(forbiddenAddressKind(address), kind, address);
});

Deno.test("forbiddenAddressKind sees through IPv6 forms that carry an IPv4 address", () => {
  const cases: [string, string | null][] = [
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["[::1]", "loopback"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.1.2.3", "private"],
    ["::ffff:a9fe:a9fe", "link-local"],
    ["::ffff:8.8.8.8", null],
    ["::10.0.0.1", "private"],
    ["::8.8.8.8", "reserved"],
    ["64:ff9b::192.168.0.1", "private"],
    ["64:ff9b::8.8.8.8", null],
    ["2002:c0a8:0101::1", "private"],
    ["2002:0808:0808::1", null],
    ["fc00::1", "private"],
    ["fd12:3456::1", "private"],
    ["fe80::1", "link-local"],
    ["febf::1", "link-local"],
    ["fec0::1", "private"],
    ["ff02::1", "multicast"],
    ["100::1", "reserved"],
    ["2001:4860:4860::8888", null],
    ["2606:4700::1111", null],
  ];
  for (const [address, kind] of cases) assert.equal(forbiddenAddressKind(address), kind, address);
});

Deno.test("forbiddenAddressKind treats what is not an IP address as forbidden", () => {
  for (const text of ["", "example.com", "127.1", "1.2.3.256", "::g", "1.2.3.4/8"]) {
    assert.equal(forbiddenAddressKind(text), "reserved", text);
  }
});

Deno.test("a name resolving to both a public and a private address reaches only the public one", async () => {
  const resolveDns = (_name: string, type: "A" | "AAAA") =>
    Promise.resolve(type === "A" ? ["10.0.0.5", "93.184.215.14"] : ["fd00::5"]);
  const addresses = await allowedAddresses("mixed.example", {
    allowPrivate: false,
    resolveTimeoutMs: 1000,
    connectTimeoutMs: 1000,
    resolveDns,
  });
  assert.deepEqual(addresses, ["93.184.215.14"]);
});

Deno.test("a name resolving only to private addresses is FORBIDDEN_DESTINATION, unless private is allowed", async () => {
  const resolveDns = (_name: string, type: "A" | "AAAA") =>
    Promise.resolve(type === "A" ? ["192.168.1.1"] : []);
  const options = { allowPrivate: false, resolveTimeoutMs: 1000, connectTimeoutMs: 1000, resolveDns };
  await assert.rejects(allowedAddresses("router.example", options), (error: unknown) => {
    assert.ok(error instanceof DestinationError);
    assert.equal(error.code, "FORBIDDEN_DESTINATION");
    assert.match(error.message, /^router\.example resolves to 192\.168\.1\.1 is a private address/);
    return true;
  });
  assert.deepEqual(await allowedAddresses("router.example", { ...options, allowPrivate: true }), [
    "192.168.1.1",
  ]);
  await assert.rejects(allowedAddresses("localhost", options), /127\.0\.0\.1 is a loopback address/);
  await assert.rejects(allowedAddresses("a.localhost.", options), /loopback/);
});

Deno.test("a resolver that never answers is UNREACHABLE after the lookup deadline", async () => {
  const resolveDns = (_name: string, _type: "A" | "AAAA", options: { signal: AbortSignal }) =>
    new Promise<string[]>((_, reject) =>
      options.signal.addEventListener("abort", () => reject(options.signal.reason), { once: true })
    );
  const started = performance.now();
  await assert.rejects(resolveHost("slow.example", 100, { resolveDns }), (error: unknown) => {
    assert.ok(error instanceof DestinationError);
    assert.equal(error.code, "UNREACHABLE");
    assert.match(error.message, /took longer than 100 ms/);
    return true;
  });
  assert.ok(performance.now() - started < 1000);
});

Deno.test("a name with no address is UNREACHABLE and says so", async () => {
  const resolveDns = () => Promise.reject(new Deno.errors.NotFound("no such name"));
  await assert.rejects(
    resolveHost("nowhere.example", 1000, { resolveDns }),
    /does not resolve \(no such name\)/,
  );
});

Deno.test("connectDestination reaches an allowed loopback listener and says refused for a closed port", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const options = { allowPrivate: true, resolveTimeoutMs: 1000, connectTimeoutMs: 2000 };
  try {
    const accepted = listener.accept();
    const conn = await connectDestination("127.0.0.1", listener.addr.port, options);
    (await accepted).close();
    conn.close();
    await assert.rejects(
      connectDestination("127.0.0.1", listener.addr.port, { ...options, allowPrivate: false }),
      (error: unknown) => error instanceof DestinationError && error.code === "FORBIDDEN_DESTINATION",
    );
  } finally {
    listener.close();
  }
  const closedPort = listener.addr.port;
  await assert.rejects(connectDestination("127.0.0.1", closedPort, options), (error: unknown) => {
    assert.ok(error instanceof DestinationError);
    assert.equal(error.code, "UNREACHABLE");
    assert.match(error.message, /^127\.0\.0\.1:\d+ refused the connection$/);
    return true;
  });
});

import assert from "node:assert/strict";
import {
  forwardsToProxies,
  MAX_REMOTE_FORWARD_LENGTH,
  parseRemoteForward,
  RemoteForwardError,
} from "./remote_forward.ts";

Deno.test("-R accepts the ssh forms, PORT:LOCALPORT, port 0 and bracketed IPv6", () => {
  assert.deepEqual(parseRemoteForward("8080:3000"), {
    publishPort: 8080,
    localAddr: "127.0.0.1",
    localPort: 3000,
  });
  assert.deepEqual(parseRemoteForward("0:3000"), { publishPort: 0, localAddr: "127.0.0.1", localPort: 3000 });
  assert.deepEqual(parseRemoteForward("8080:localhost:3000"), {
    publishPort: 8080,
    localAddr: "localhost",
    localPort: 3000,
  });
  assert.deepEqual(parseRemoteForward("127.0.0.1:8080:10.0.0.5:3000"), {
    publishAddr: "127.0.0.1",
    publishPort: 8080,
    localAddr: "10.0.0.5",
    localPort: 3000,
  });
  assert.deepEqual(parseRemoteForward("[::1]:8080:[fe80::1]:3000"), {
    publishAddr: "::1",
    publishPort: 8080,
    localAddr: "fe80::1",
    localPort: 3000,
  });
  assert.deepEqual(parseRemoteForward("8080:[::1]:3000"), {
    publishPort: 8080,
    localAddr: "::1",
    localPort: 3000,
  });
  assert.equal(parseRemoteForward("*:8080:localhost:3000").publishAddr, "0.0.0.0");
  assert.equal(parseRemoteForward(":8080:localhost:3000").publishAddr, "0.0.0.0");
  assert.equal(parseRemoteForward("localhost:8080:localhost:3000").publishAddr, "127.0.0.1");
  assert.equal(parseRemoteForward("65535:1").publishPort, 65535);
});

Deno.test("-R refuses hostile values with the value and the accepted forms in the message", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /is empty/],
    ["3000", /no ':'/],
    [":", /not a port number/],
    [":::", /not a port number/],
    ["8080:", /local port "" is not a port number/],
    [":3000", /published port "" is not a port number/],
    ["8080:0", /local port 0 is not a port from 1 to 65535/],
    ["65536:3000", /published port 65536 is not a port from 0 to 65535/],
    ["8080:99999", /local port 99999/],
    ["-1:3000", /not a port number/],
    ["+80:3000", /not a port number/],
    ["0x50:3000", /not a port number/],
    ["1e3:3000", /not a port number/],
    ["000000080:3000", /not a port number/],
    ["８０８０:3000", /non-ASCII/],
    ["8080：3000", /non-ASCII/],
    ["8080: 3000", /space/],
    ["8080:3000\n", /control/],
    ["8080:evil\u202e:3000", /non-ASCII/],
    ["8080:local\0host:3000", /control/],
    ["::1:8080:localhost:3000", /IPv6 address needs brackets/],
    ["fe80::1:8080:localhost:3000", /IPv6 address needs brackets/],
    ["1:2:3:4:5", /5 colon-separated parts/],
    ["[::1:8080:localhost:3000", /no matching '\]'/],
    ["::1]:8080:localhost:3000", /brackets must enclose a whole address/],
    ["[::1]x:8080:localhost:3000", /must be followed by ':'/],
    ["[8080]:3000", /in brackets where a port belongs/],
    ["8080:[localhost]:3000", /not an IPv6 address/],
    ["8080:[127.0.0.1]:3000", /not an IPv6 address/],
    ["8080::3000", /local host is empty/],
    ["8080:bad_host!:3000", /not an IP address or host name/],
    ["8080:-x:3000", /not an IP address or host name/],
    ["example.com:8080:localhost:3000", /published address "example.com" is not an IP address/],
    ["[zz::1]:8080:localhost:3000", /published address "zz::1"/],
    ["[]:8080:localhost:3000", /published address ""/],
    ["x".repeat(MAX_REMOTE_FORWARD_LENGTH + 1), /characters long/],
    [`8080:${"a".repeat(300)}:3000`, /not an IP address or host name/],
  ];
  for (const [value, problem] of cases) {
    assert.throws(
      () => parseRemoteForward(value),
      (error: unknown) => {
        assert.ok(error instanceof RemoteForwardError, `${JSON.stringify(value)}: ${error}`);
        assert.match(error.message, problem, JSON.stringify(value));
        assert.ok(error.message.startsWith(`-R ${JSON.stringify(value.slice(0, 100))}`), error.message);
        assert.match(error.message, /PORT:LOCALHOST:LOCALPORT/);
        assert.equal(error.value, value);
        return true;
      },
    );
  }
});

Deno.test("-R error messages stay short and single-line for huge or multi-line values", () => {
  const huge = `8080:${"\n".repeat(10_000)}:3000`;
  assert.throws(() => parseRemoteForward(huge), (error: unknown) => {
    assert.ok(error instanceof RemoteForwardError);
    assert.ok(error.message.length < 500, `${error.message.length} characters`);
    assert.ok(!error.message.includes("\n"));
    return true;
  });
});

Deno.test("forwards become uniquely named proxies, port 0 named 'any'", () => {
  const proxies = forwardsToProxies(
    [
      parseRemoteForward("0:3000"),
      parseRemoteForward("0:3000"),
      parseRemoteForward("[::1]:8080:localhost:3001"),
    ],
    ["tcp-any-3000"],
  );
  assert.deepEqual(proxies, [
    { name: "tcp-any-3000-2", publish_port: 0, local_addr: "127.0.0.1", local_port: 3000 },
    { name: "tcp-any-3000-3", publish_port: 0, local_addr: "127.0.0.1", local_port: 3000 },
    {
      name: "tcp-8080-3001",
      publish_addr: "::1",
      publish_port: 8080,
      local_addr: "localhost",
      local_port: 3001,
    },
  ]);
});

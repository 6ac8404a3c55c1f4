import assert from "node:assert/strict";
import { parseWrk, wrkScript } from "../bench/sections/vhost_wrk.ts";

const REPORT = `Running 10s test @ http://127.0.0.1:31294/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    5.01ms  67.12ms   96.10%
    Req/Sec     3.74k   401.22     4.50k    70.00%
  Latency Distribution
     50%    1.68ms
     75%    2.01ms
     90%    2.80ms
     99%   67.12ms
  74520 requests in 10.03s, 5.76MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   7432.10
Transfer/sec:    588.10KB
`;

Deno.test("the vhost bench reads wrk's requests/s, p50, p99 and errors from its report", () => {
  assert.deepEqual(parseWrk(REPORT), { requestsPerSec: 7432.1, p50Us: 1680, p99Us: 67120, errors: 8 });
  const clean = REPORT.replace(/ {2}Socket errors.*\n {2}Non-2xx.*\n/, "").replace("1.68ms", "321.00us");
  assert.deepEqual(parseWrk(clean), { requestsPerSec: 7432.1, p50Us: 321, p99Us: 67120, errors: 0 });
  assert.throws(() => parseWrk("unable to connect to 127.0.0.1:1 Connection refused"), /Requests\/sec/);
});

Deno.test("the vhost bench's wrk script alternates the Host header over the names given", () => {
  const script = wrkScript(["app.bench", "api.bench"]);
  assert.match(script, /local hosts = \{"app\.bench", "api\.bench"\}/);
  assert.match(script, /\["Host"\] = hosts\[\(i % #hosts\) \+ 1\]/);
});

/**
 * The UDP side of the `udp` bench section, as a child process (`deno run --unstable-net --allow-net`: the
 * bench itself runs without `--unstable-net`). It runs a UDP echo service on loopback and prints
 * `{"echoPort":N}`; then each line on stdin is a measurement, answered with one JSON line on stdout:
 *
 * - `{"op":"rtt","port":P,"count":C,"size":S}`: C round trips of S-byte datagrams to 127.0.0.1:P, one at a
 *   time → `{"p50Us","p99Us","lost"}` (a datagram not answered within 1 s counts as lost).
 * - `{"op":"throughput","port":P,"ms":T,"size":S,"window":W}`: for T ms, W datagrams of S bytes in flight →
 *   `{"mbPerSec","lostPct"}` (echoed payload per second; a datagram not echoed within 200 ms gives its slot
 *   in the window to a new one, up to 4 windows out in all; late echoes still count).
 *
 * It exits when stdin closes.
 *
 * @module
 */

const echo = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
const echoLoop = (async () => {
  const buffer = new Uint8Array(65_536);
  while (true) {
    let received: [Uint8Array, Deno.Addr];
    try {
      received = await echo.receive(buffer);
    } catch {
      return;
    }
    await echo.send(received[0], received[1]).catch(() => {});
  }
})();

/** A datagram not echoed within this long gives its slot in the window to a new one (throughput). */
const LOST_AFTER_MS = 200;

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? Number.NaN;
}

async function rtt(port: number, count: number, size: number): Promise<Record<string, number>> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const payload = new Uint8Array(size).fill(7);
  const buffer = new Uint8Array(65_536);
  const times: number[] = [];
  let lost = 0;
  try {
    for (let index = 0; index < count; index++) {
      const startedMs = performance.now();
      await socket.send(payload, target);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const answered = await Promise.race([
        socket.receive(buffer).then(() => true),
        new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 1000)),
      ]);
      clearTimeout(timer);
      if (!answered) {
        // The pending receive is still armed: a fresh socket keeps late answers out of the next round.
        lost++;
        break;
      }
      times.push((performance.now() - startedMs) * 1000);
    }
  } finally {
    socket.close();
  }
  times.sort((a, b) => a - b);
  return { p50Us: percentile(times, 0.5), p99Us: percentile(times, 0.99), lost };
}

async function throughput(
  port: number,
  ms: number,
  size: number,
  window: number,
): Promise<Record<string, number>> {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  /** When each datagram still out was sent, by its sequence number (the first 4 bytes). */
  const out = new Map<number, number>();
  let sequence = 0;
  let sent = 0;
  let received = 0;
  let done = false;
  const fill = async () => {
    // Late answers still arrive after their slot was reused: at most 4 windows may be out in all.
    while (!done && out.size < window && sent - received < 4 * window) {
      const payload = new Uint8Array(size);
      new DataView(payload.buffer).setUint32(0, sequence);
      out.set(sequence++, performance.now());
      sent++;
      await socket.send(payload, target).catch(() => {});
    }
  };
  const receiving = (async () => {
    const buffer = new Uint8Array(65_536);
    while (true) {
      let datagram: Uint8Array;
      try {
        [datagram] = await socket.receive(buffer);
      } catch {
        return;
      }
      // A late answer (its slot already reused) counts as received, but frees no slot.
      out.delete(new DataView(datagram.buffer, datagram.byteOffset).getUint32(0));
      received++;
      if (!done) fill();
    }
  })();
  // A datagram not echoed within LOST_AFTER_MS is lost: its slot in the window goes to a new one.
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [key, sentMs] of out) if (now - sentMs > LOST_AFTER_MS) out.delete(key);
    fill();
  }, 10);
  const startedMs = performance.now();
  await fill();
  await new Promise((resolve) => setTimeout(resolve, ms));
  done = true;
  const elapsedSecs = (performance.now() - startedMs) / 1000;
  const receivedAtEnd = received;
  clearInterval(sweep);
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.close();
  await receiving;
  return {
    mbPerSec: (receivedAtEnd * size) / elapsedSecs / 1e6,
    lostPct: sent === 0 ? 0 : Math.max(0, (sent - received) / sent) * 100,
  };
}

console.log(JSON.stringify({ echoPort: (echo.addr as Deno.NetAddr).port }));

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let pending = "";
for await (const chunk of lines) {
  pending += chunk;
  let newline = pending.indexOf("\n");
  while (newline >= 0) {
    const line = pending.slice(0, newline).trim();
    pending = pending.slice(newline + 1);
    newline = pending.indexOf("\n");
    if (line === "") continue;
    const request = JSON.parse(line) as {
      op: string;
      port: number;
      count?: number;
      size?: number;
      ms?: number;
      window?: number;
    };
    const answer = request.op === "rtt"
      ? await rtt(request.port, request.count ?? 1000, request.size ?? 64)
      : await throughput(request.port, request.ms ?? 2000, request.size ?? 1200, request.window ?? 64);
    console.log(JSON.stringify(answer));
  }
}
echo.close();
await echoLoop;

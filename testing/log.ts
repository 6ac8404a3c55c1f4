/**
 * Log capture shared by the test suites of every layer: the records tls-tunnel's loggers write while a
 * test body runs.
 *
 * @module
 */

import { configure, type LogRecord, reset } from "@logtape/logtape";

/**
 * Collects every record of the `tls-tunnel` loggers (debug and up) while `body` runs, and resets the
 * logging configuration afterwards, whether `body` succeeds or fails.
 */
export async function withLogRecords(body: (records: LogRecord[]) => Promise<void>): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    sinks: { memory: (record) => records.push(record) },
    loggers: [
      { category: ["tls-tunnel"], sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
    reset: true,
  });
  try {
    await body(records);
  } finally {
    await reset();
  }
}

/**
 * Port-range lists as written in configs (`"20000-20100,8080"`) and as the roles use them.
 *
 * @module
 */

/** An inclusive range of TCP ports, e.g. `20000-20100` → `{ start: 20000, end: 20100 }`. */
export interface PortRange {
  /** First port in the range (1-65535). */
  start: number;
  /** Last port in the range, inclusive (≥ start). */
  end: number;
}

/** Why a port-range string could not be parsed, with a hint. */
export interface PortRangeProblem {
  /** What is wrong, quoting the offending part. */
  message: string;
  /** What to write instead. */
  hint: string;
}

const PORT_PART = /^\d{1,5}$/;

function parsePort(text: string, minPort: number): number | PortRangeProblem {
  if (!PORT_PART.test(text)) {
    return {
      message: `"${text}" is not a port number`,
      hint: `write ports as digits, e.g. "20000-20100,8080"`,
    };
  }
  const port = Number(text);
  if (port < minPort || port > 65535) {
    return { message: `port ${port} is out of range`, hint: `ports go from ${minPort} to 65535` };
  }
  return port;
}

/**
 * Parses one range, `"20000-20100"` or a single port `"8080"` (→ 8080-8080).
 *
 * @returns the range, or the problem found.
 */
export function parsePortRange(text: string, minPort = 1): PortRange | PortRangeProblem {
  const trimmed = text.trim();
  const parts = trimmed.split("-").map((p) => p.trim());
  if (trimmed === "" || parts.length > 2) {
    return {
      message: `"${text}" is not a port or a range`,
      hint: `write a port ("8080") or a range ("20000-20100")`,
    };
  }
  const start = parsePort(parts[0] ?? "", minPort);
  if (typeof start !== "number") return start;
  const end = parts.length === 2 ? parsePort(parts[1] ?? "", minPort) : start;
  if (typeof end !== "number") return end;
  if (start > end) {
    return {
      message: `range ${start}-${end} starts after it ends`,
      hint: `write the lower port first: "${end}-${start}"`,
    };
  }
  return { start, end };
}

/**
 * Parses a comma-separated list of ports and ranges, e.g. `"20000-20100, 8080"`.
 *
 * @returns the ranges in the order written, or the first problem found.
 */
export function parsePortRanges(text: string): PortRange[] | PortRangeProblem {
  if (text.trim() === "") {
    return { message: "the port list is empty", hint: `write ports and ranges, e.g. "20000-20100,8080"` };
  }
  const ranges: PortRange[] = [];
  for (const part of text.split(",")) {
    const range = parsePortRange(part);
    if (!("start" in range)) return range;
    ranges.push(range);
  }
  return ranges;
}

/** Formats ranges back into config spelling: `20000-20100,8080`. */
export function formatPortRanges(ranges: readonly PortRange[]): string {
  return ranges.map((r) => r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`).join(",");
}

/** True when `port` lies in one of `ranges`. */
export function portInRanges(port: number, ranges: readonly PortRange[]): boolean {
  return ranges.some((r) => port >= r.start && port <= r.end);
}

/**
 * A strict check of the Prometheus text exposition format (0.0.4) for tests, standing in for
 * `promtool check metrics` where promtool is not installed (Debian 12's `prometheus` package, the only
 * source of promtool there, is the whole server: 19 MB to download, 96 MB installed). With promtool on
 * PATH, {@linkcode promtoolProblems} runs it as well.
 *
 * It checks what the parser of Prometheus refuses and what promtool's linter reports: line syntax,
 * names, label names and escapes, values, one HELP and TYPE per family before its samples, families
 * contiguous, no duplicate series, counters ending in `_total` and nothing else doing so, reserved
 * suffixes, histogram buckets (ascending `le`, cumulative counts, `+Inf` equal to `_count`). And two
 * rules of this project: no label holding a peer address (an ephemeral port makes a series per
 * connection), and no label that only repeats another label of the same sample.
 *
 * @module
 */

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
/** Labels that would carry a peer's address, whose port changes with every connection. */
const FORBIDDEN_LABELS = new Set(["remote_addr", "peer", "peer_addr", "remote_port", "source_port"]);

interface Sample {
  name: string;
  labels: Array<[string, string]>;
  value: number;
}

/** Parses `{a="x",b="y"}` strictly; returns the pairs or a problem. */
function parseLabels(text: string): Array<[string, string]> | string {
  const pairs: Array<[string, string]> = [];
  let rest = text;
  while (rest !== "") {
    const name = /^([^=]*)="/.exec(rest);
    if (!name) return `label syntax: ${rest}`;
    const labelName = name[1] ?? "";
    if (!LABEL_NAME.test(labelName)) return `invalid label name '${labelName}'`;
    if (labelName.startsWith("__")) return `reserved label name '${labelName}'`;
    let index = name[0].length;
    let value = "";
    while (true) {
      const char = rest[index];
      if (char === undefined) return `unterminated label value of '${labelName}'`;
      if (char === '"') break;
      if (char === "\n") return `raw line feed in label '${labelName}'`;
      if (char === "\\") {
        const next = rest[index + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else return `invalid escape \\${next ?? ""} in label '${labelName}'`;
        index += 2;
        continue;
      }
      value += char;
      index++;
    }
    pairs.push([labelName, value]);
    rest = rest.slice(index + 1);
    if (rest.startsWith(",")) rest = rest.slice(1);
    else if (rest !== "") return `expected ',' after label '${labelName}'`;
  }
  return pairs;
}

function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && (types.get(base) === "histogram" || types.get(base) === "summary")) {
      return base;
    }
  }
  return name;
}

/** Every problem found in `text`; empty when it passes. */
export function expositionProblems(text: string): string[] {
  const problems: string[] = [];
  if (text !== "" && !text.endsWith("\n")) problems.push("the exposition does not end with a line feed");
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const finished = new Set<string>();
  const seriesSeen = new Set<string>();
  const samplesByFamily = new Map<string, Sample[]>();
  let current: string | null = null;
  const enter = (family: string, line: number) => {
    if (family === current) return;
    if (finished.has(family)) problems.push(`line ${line}: family ${family} is not contiguous`);
    if (current !== null) finished.add(current);
    current = family;
  };
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const [zeroBased, line] of lines.entries()) {
    const number = zeroBased + 1;
    if (line === "") {
      problems.push(`line ${number}: empty line`);
      continue;
    }
    if (line.startsWith("#")) {
      const comment = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!comment) continue; // Other comments are allowed and ignored.
      const [, kind = "", name = "", rest = ""] = comment;
      if (!METRIC_NAME.test(name)) {
        problems.push(`line ${number}: invalid metric name '${name}'`);
        continue;
      }
      enter(name, number);
      if (kind === "HELP") {
        if (helps.has(name)) problems.push(`line ${number}: second HELP for ${name}`);
        if (rest.trim() === "") problems.push(`line ${number}: empty HELP for ${name}`);
        if (/\\(?![\\n])/.test(rest)) problems.push(`line ${number}: invalid escape in HELP of ${name}`);
        helps.add(name);
      } else {
        if (types.has(name)) problems.push(`line ${number}: second TYPE for ${name}`);
        if ((samplesByFamily.get(name) ?? []).length > 0) {
          problems.push(`line ${number}: TYPE of ${name} after its samples`);
        }
        if (!TYPES.has(rest)) problems.push(`line ${number}: unknown type '${rest}' for ${name}`);
        types.set(name, rest);
      }
      continue;
    }
    const sample = /^([^{\s]+)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line);
    if (!sample) {
      problems.push(`line ${number}: not a sample line: ${line}`);
      continue;
    }
    const [, name = "", labelText = "", valueText = ""] = sample;
    if (!METRIC_NAME.test(name)) {
      problems.push(`line ${number}: invalid metric name '${name}'`);
      continue;
    }
    if (!VALUE.test(valueText)) {
      problems.push(`line ${number}: invalid value '${valueText}'`);
      continue;
    }
    const labels = parseLabels(labelText);
    if (typeof labels === "string") {
      problems.push(`line ${number}: ${labels}`);
      continue;
    }
    const family = familyOf(name, types);
    enter(family, number);
    const names = labels.map(([labelName]) => labelName);
    if (new Set(names).size !== names.length) problems.push(`line ${number}: a label repeats in ${line}`);
    for (const labelName of names) {
      if (FORBIDDEN_LABELS.has(labelName)) {
        problems.push(`line ${number}: label '${labelName}' holds a peer address (ephemeral port)`);
      }
    }
    const key = `${name}{${
      [...labels].sort(([a], [b]) => a.localeCompare(b)).map((p) => p.join("=")).join(",")
    }}`;
    if (seriesSeen.has(key)) problems.push(`line ${number}: duplicate series ${key}`);
    seriesSeen.add(key);
    const list = samplesByFamily.get(family) ?? [];
    list.push({ name, labels, value: Number(valueText.replace("Inf", "Infinity")) });
    samplesByFamily.set(family, list);
  }
  for (const [family, samples] of samplesByFamily) {
    const type = types.get(family);
    if (type === undefined) problems.push(`${family} has samples but no TYPE`);
    if (!helps.has(family)) problems.push(`${family} has no HELP`);
    if (type === "counter" && !family.endsWith("_total")) {
      problems.push(`counter ${family} should end in _total`);
    }
    if (type !== "counter" && family.endsWith("_total")) {
      problems.push(`${type} ${family} should not end in _total (counters only)`);
    }
    if (type !== "histogram" && type !== "summary" && /_(bucket|count|sum)$/.test(family)) {
      problems.push(`${family} uses a suffix reserved for histograms and summaries`);
    }
    if (/(milli|micro|nano)seconds|_ms$|kilobytes|megabytes/.test(family)) {
      problems.push(`${family} should use base units (seconds, bytes)`);
    }
    if (family !== family.toLowerCase()) problems.push(`${family} should be snake_case`);
    duplicateLabels(family, samples, problems);
    if (type === "histogram") histogramProblems(family, samples, problems);
  }
  return problems;
}

/** A label whose value equals another label's value in every sample of the family only repeats it. */
function duplicateLabels(family: string, samples: Sample[], problems: string[]): void {
  const first = samples[0];
  if (first === undefined || samples.length < 2) return;
  const names = first.labels.map(([name]) => name);
  for (const a of names) {
    for (const b of names) {
      if (a >= b) continue;
      const same = samples.every((sample) => {
        const map = new Map(sample.labels);
        return map.has(a) && map.get(a) === map.get(b);
      });
      if (same) problems.push(`${family}: label '${a}' always equals label '${b}'`);
    }
  }
}

function histogramProblems(family: string, samples: Sample[], problems: string[]): void {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: boolean }>();
  for (const sample of samples) {
    const rest = sample.labels.filter(([name]) => name !== "le");
    const key = JSON.stringify(rest);
    const group = groups.get(key) ?? { buckets: [] };
    groups.set(key, group);
    if (sample.name === `${family}_bucket`) {
      const le = sample.labels.find(([name]) => name === "le")?.[1];
      if (le === undefined) problems.push(`${family}_bucket without le`);
      else group.buckets.push([Number(le.replace("Inf", "Infinity")), sample.value]);
    } else if (sample.name === `${family}_count`) group.count = sample.value;
    else if (sample.name === `${family}_sum`) group.sum = true;
    else problems.push(`${sample.name} in histogram ${family}`);
  }
  for (const group of groups.values()) {
    const last = group.buckets.at(-1);
    if (last === undefined || last[0] !== Infinity) problems.push(`${family} lacks its +Inf bucket`);
    else if (group.count !== last[1]) problems.push(`${family}_count differs from the +Inf bucket`);
    if (group.sum !== true) problems.push(`${family} lacks _sum`);
    for (let index = 1; index < group.buckets.length; index++) {
      const [le, count] = group.buckets[index] ?? [0, 0];
      const [previousLe, previousCount] = group.buckets[index - 1] ?? [0, 0];
      if (le <= previousLe) problems.push(`${family} buckets are not in ascending le order`);
      if (count < previousCount) problems.push(`${family} bucket counts are not cumulative`);
    }
  }
}

/** Whether `promtool` is on PATH. */
export const HAVE_PROMTOOL: boolean = (() => {
  try {
    return new Deno.Command("sh", { args: ["-c", "command -v promtool"], stdout: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** `promtool check metrics`'s complaints about `text` (none when it passes), or null without promtool. */
export async function promtoolProblems(text: string): Promise<string[] | null> {
  if (!HAVE_PROMTOOL) return null;
  const child = new Deno.Command("promtool", {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const output = await child.output();
  const said = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return output.success ? [] : said.trim().split("\n");
}

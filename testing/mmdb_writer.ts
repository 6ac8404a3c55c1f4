/**
 * A minimal writer of MaxMind DB files (the `.mmdb` format of GeoLite2, spec "MaxMind DB File Format
 * Specification" 2.0), for tests of the forwarders' GeoIP routing: no npm package writes the format
 * offline, and a test must not download a database. It writes an IPv6 tree (IPv4 networks live under
 * `::/96`, as in MaxMind's own files) with 24-bit records, and data values of the types a country database
 * uses: maps, strings, unsigned integers, arrays. The result is read by `mmdb-lib` like a real database.
 *
 * @example
 * ```ts
 * import { writeMmdb } from "./mmdb_writer.ts";
 *
 * const bytes = writeMmdb([{ cidr: "1.0.1.0/24", data: { country: { iso_code: "CN" } } }]);
 * console.log(bytes.length > 0);
 * ```
 *
 * @module
 */

import { ipBytes } from "../lib/net/cidr.ts";

/** A value the writer can encode. */
export type MmdbValue = string | number | bigint | boolean | MmdbValue[] | { [key: string]: MmdbValue };

/** One network and the record it maps to. */
export interface MmdbEntry {
  /** `"1.0.1.0/24"`, `"2001:db8::/32"`, or a bare address (one host). */
  cidr: string;
  /** The record (a country database: `{ country: { iso_code: "CN" } }`). */
  data: MmdbValue;
}

/** Options of {@linkcode writeMmdb}. */
export interface MmdbOptions {
  /** `database_type` of the metadata. */
  databaseType?: string;
  /** `build_epoch` (seconds); fixed by default so the output is reproducible. */
  buildEpochSecs?: number;
}

const METADATA_MARKER = new Uint8Array([0xab, 0xcd, 0xef, ...new TextEncoder().encode("MaxMind.com")]);

/** A child of a tree node: another node, a data offset, or nothing. */
type Record = { node: TreeNode } | { data: number } | null;

interface TreeNode {
  children: [Record, Record];
}

/** The `(type, size)` control bytes of the data section; extended types take one more byte. */
function control(type: number, size: number): number[] {
  const bytes: number[] = [];
  let sizeBits: number;
  const extra: number[] = [];
  if (size < 29) sizeBits = size;
  else if (size < 29 + 256) {
    sizeBits = 29;
    extra.push(size - 29);
  } else if (size < 285 + 65536) {
    sizeBits = 30;
    const rest = size - 285;
    extra.push(rest >> 8, rest & 0xff);
  } else {
    sizeBits = 31;
    const rest = size - 65821;
    extra.push((rest >> 16) & 0xff, (rest >> 8) & 0xff, rest & 0xff);
  }
  if (type <= 7) bytes.push((type << 5) | sizeBits);
  else bytes.push(sizeBits, type - 7);
  return [...bytes, ...extra];
}

function unsignedBytes(value: bigint): number[] {
  const bytes: number[] = [];
  for (let rest = value; rest > 0n; rest >>= 8n) bytes.unshift(Number(rest & 0xffn));
  return bytes;
}

/** Encodes one data value (spec §"Output Data Section"). */
export function encodeMmdbValue(value: MmdbValue): number[] {
  if (typeof value === "string") {
    const utf8 = [...new TextEncoder().encode(value)];
    return [...control(2, utf8.length), ...utf8];
  }
  if (typeof value === "boolean") return control(14, value ? 1 : 0);
  if (typeof value === "number" || typeof value === "bigint") {
    const big = BigInt(value);
    if (big < 0n) throw new RangeError(`mmdb writer: negative integers are not supported (${value})`);
    const bytes = unsignedBytes(big);
    const type = big < 0x10000n ? 5 : big < 0x1_0000_0000n ? 6 : big < 1n << 64n ? 9 : 10;
    return [...control(type, bytes.length), ...bytes];
  }
  if (Array.isArray(value)) return [...control(11, value.length), ...value.flatMap(encodeMmdbValue)];
  const entries = Object.entries(value);
  return [
    ...control(7, entries.length),
    ...entries.flatMap(([key, item]) => [...encodeMmdbValue(key), ...encodeMmdbValue(item)]),
  ];
}

/** The 128 bits of an address in the IPv6 tree: IPv4 as `::a.b.c.d`. */
function treeBits(cidr: string): { bytes: Uint8Array; prefixBits: number } {
  const slash = cidr.indexOf("/");
  const address = slash < 0 ? cidr : cidr.slice(0, slash);
  const raw = ipBytes(address);
  if (raw === null) throw new TypeError(`mmdb writer: ${cidr} is not an IP network`);
  const prefix = slash < 0 ? raw.length * 8 : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > raw.length * 8) {
    throw new TypeError(`mmdb writer: ${cidr} has a bad prefix length`);
  }
  if (raw.length === 16) return { bytes: raw, prefixBits: prefix };
  const bytes = new Uint8Array(16);
  bytes.set(raw, 12);
  return { bytes, prefixBits: 96 + prefix };
}

function bitAt(bytes: Uint8Array, index: number): 0 | 1 {
  return (((bytes[index >> 3] ?? 0) >> (7 - (index & 7))) & 1) as 0 | 1;
}

/**
 * A MaxMind DB file mapping each entry's network to its data. A more specific network inside another
 * overrides it for its addresses, whatever the order of the entries.
 */
export function writeMmdb(entries: readonly MmdbEntry[], options: MmdbOptions = {}): Uint8Array {
  const root: TreeNode = { children: [null, null] };
  const data: number[] = [];
  const offsets = new Map<string, number>();
  // Least specific first, so a more specific network splits the record of the one that contains it.
  const sorted = entries.map((entry) => ({ entry, ...treeBits(entry.cidr) }))
    .sort((a, b) => a.prefixBits - b.prefixBits);
  for (const { entry, bytes, prefixBits } of sorted) {
    if (prefixBits === 0) throw new TypeError("mmdb writer: a /0 network is not supported");
    const key = JSON.stringify(entry.data, (_, value) => typeof value === "bigint" ? `${value}n` : value);
    let offset = offsets.get(key);
    if (offset === undefined) {
      offset = data.length;
      offsets.set(key, offset);
      data.push(...encodeMmdbValue(entry.data));
    }
    let node = root;
    for (let depth = 0; depth < prefixBits - 1; depth++) {
      const bit = bitAt(bytes, depth);
      const child = node.children[bit];
      if (child !== null && "node" in child) {
        node = child.node;
        continue;
      }
      // Empty, or the data of a less specific network: a new node whose two halves keep that.
      const next: TreeNode = { children: [child, child] };
      node.children[bit] = { node: next };
      node = next;
    }
    node.children[bitAt(bytes, prefixBits - 1)] = { data: offset };
  }
  const nodes: TreeNode[] = [];
  const numbers = new Map<TreeNode, number>();
  const queue = [root];
  while (queue.length > 0) {
    const node = queue.shift() as TreeNode;
    numbers.set(node, nodes.length);
    nodes.push(node);
    for (const child of node.children) if (child !== null && "node" in child) queue.push(child.node);
  }
  const nodeCount = nodes.length;
  if (nodeCount + 16 + data.length >= 1 << 24) {
    throw new RangeError("mmdb writer: too large for 24-bit records");
  }
  const tree = new Uint8Array(nodeCount * 6);
  nodes.forEach((node, index) => {
    node.children.forEach((child, side) => {
      const value = child === null
        ? nodeCount
        : "node" in child
        ? numbers.get(child.node) ?? nodeCount
        : nodeCount + 16 + child.data;
      const at = index * 6 + side * 3;
      tree[at] = (value >> 16) & 0xff;
      tree[at + 1] = (value >> 8) & 0xff;
      tree[at + 2] = value & 0xff;
    });
  });
  const metadata = encodeMmdbValue({
    binary_format_major_version: 2,
    binary_format_minor_version: 0,
    build_epoch: BigInt(options.buildEpochSecs ?? 1_700_000_000),
    database_type: options.databaseType ?? "tls-tunnel-test-Country",
    description: { en: "tls-tunnel test database (generated by testing/mmdb_writer.ts)" },
    ip_version: 6,
    languages: ["en"],
    node_count: nodeCount,
    record_size: 24,
  });
  const out = new Uint8Array(tree.length + 16 + data.length + METADATA_MARKER.length + metadata.length);
  out.set(tree, 0);
  out.set(data, tree.length + 16);
  out.set(METADATA_MARKER, tree.length + 16 + data.length);
  out.set(metadata, tree.length + 16 + data.length + METADATA_MARKER.length);
  return out;
}

/**
 * The small country database the forwarder tests route with (`tests/testdata/geoip_test.mmdb`), written by
 * {@linkcode writeMmdb}. Its networks are documentation and test ranges, so no real address is named.
 * Regenerate the file with `deno run --allow-write testing/mmdb_fixture.ts`; a test checks the shipped file
 * equals what this writes.
 *
 * @module
 */

import { type MmdbEntry, writeMmdb } from "./mmdb_writer.ts";

/** Where the shipped database lives, relative to the project root. */
export const GEOIP_TEST_DB = "tests/testdata/geoip_test.mmdb";

/** The networks of the test database and their countries. */
export const GEOIP_TEST_ENTRIES: readonly MmdbEntry[] = [
  { cidr: "192.0.2.0/24", data: { country: { iso_code: "CN" } } },
  { cidr: "198.51.100.0/24", data: { country: { iso_code: "US" } } },
  { cidr: "203.0.113.0/24", data: { country: { iso_code: "HK" } } },
  { cidr: "203.0.113.128/25", data: { country: { iso_code: "JP" } } },
  // Only registered_country, as GeoLite2 gives for some anycast networks.
  { cidr: "100.64.0.0/10", data: { registered_country: { iso_code: "tw" } } },
  { cidr: "2001:db8::/32", data: { country: { iso_code: "CN" } } },
  { cidr: "127.0.0.0/8", data: { country: { iso_code: "ZZ" } } },
];

/** The test database's bytes. */
export function geoipTestDatabase(): Uint8Array {
  return writeMmdb(GEOIP_TEST_ENTRIES);
}

if (import.meta.main) {
  await Deno.writeFile(new URL(`../${GEOIP_TEST_DB}`, import.meta.url), geoipTestDatabase());
  console.log(`wrote ${GEOIP_TEST_DB}`);
}

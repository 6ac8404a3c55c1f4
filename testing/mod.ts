/**
 * What tests/, lib's unit tests, bench/ and scripts/ share: certificates, config files and the real CLI as
 * a child process (`helpers.ts`), an in-process tunnel (`tunnel.ts`), a raw protocol client written from
 * lib/protocol/README.md (`raw_client.ts`), the fuzzer and soak harness (`fuzz_*.ts`, `client_fuzz.ts`,
 * `soak.ts`, `live_tunnel.ts`), process probes (`proc_stats.ts`, and `lag_probe.ts`, preloaded into child
 * processes), the dashboard's browser driver (`dashboard_browser.ts`, run as a child process), and
 * fixtures for unit tests (`bytes.ts`, `log.ts`, `mux.ts`, `stats_fixtures.ts`, `transport.ts`). Nothing in lib/ imports
 * these, except unit tests.
 *
 * @module
 */

export * from "./helpers.ts";

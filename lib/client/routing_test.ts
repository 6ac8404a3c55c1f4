import assert from "node:assert/strict";
import {
  domainMatches,
  ForwardRouter,
  GeoIpDatabaseError,
  loadCountryDatabase,
  type RoutingRules,
} from "./routing.ts";
import { GEOIP_TEST_DB, geoipTestDatabase } from "../../testing/mmdb_fixture.ts";

const DB = new URL(`../../${GEOIP_TEST_DB}`, import.meta.url).pathname;

const NO_RULES: RoutingRules = {
  directCountries: [],
  proxyCountries: [],
  directIps: [],
  proxyIps: [],
  directDomains: [],
  proxyDomains: [],
  defaultStrategy: "proxy",
};

Deno.test("domain patterns: exact, *. with the name itself, . for subdomains only, on label boundaries", () => {
  const cases: [string, string, boolean][] = [
    ["example.com", "example.com", true],
    ["www.example.com", "example.com", false],
    ["www.example.com", "*.example.com", true],
    ["a.b.example.com", "*.example.com", true],
    ["example.com", "*.example.com", true],
    ["badexample.com", "*.example.com", false],
    ["example.com.evil", "*.example.com", false],
    ["www.example.com", ".example.com", true],
    ["example.com", ".example.com", false],
    ["badexample.com", ".example.com", false],
    ["WWW.Example.COM.", "*.example.com", true],
  ];
  for (const [host, pattern, expected] of cases) {
    assert.equal(domainMatches(host, pattern), expected, `${host} ~ ${pattern}`);
  }
});

Deno.test("the shipped test database is what testing/mmdb_fixture.ts writes", async () => {
  assert.deepEqual(await Deno.readFile(DB), geoipTestDatabase());
});

Deno.test("the country lookup reads country, then registered_country, for IPv4, IPv6 and mapped IPv4", async () => {
  const countryOf = await loadCountryDatabase(DB);
  assert.equal(countryOf("192.0.2.77"), "CN");
  assert.equal(countryOf("198.51.100.1"), "US");
  assert.equal(countryOf("203.0.113.5"), "HK");
  assert.equal(countryOf("203.0.113.200"), "JP", "the more specific network wins");
  assert.equal(countryOf("100.64.1.1"), "TW", "registered_country, upper-cased");
  assert.equal(countryOf("2001:db8::1"), "CN");
  assert.equal(countryOf("::ffff:192.0.2.1"), "CN");
  assert.equal(countryOf("8.8.8.8"), null);
  assert.equal(countryOf("2606:4700::1"), null);
});

Deno.test("a missing or corrupt geoip_db is a clear error naming the file", async () => {
  await assert.rejects(loadCountryDatabase("/nonexistent/geo.mmdb"), (error: unknown) => {
    assert.ok(error instanceof GeoIpDatabaseError);
    assert.match(error.message, /^geoip_db \/nonexistent\/geo\.mmdb does not exist/);
    return true;
  });
  const corrupt = await Deno.makeTempFile({ suffix: ".mmdb" });
  try {
    await Deno.writeFile(corrupt, new TextEncoder().encode("not a database at all"));
    await assert.rejects(loadCountryDatabase(corrupt), /is not a readable MaxMind database/);
  } finally {
    await Deno.remove(corrupt);
  }
});

Deno.test("routing order: domains, then IPs, then countries, then the default strategy", async () => {
  const router = await ForwardRouter.load({
    ...NO_RULES,
    geoipDb: DB,
    directCountries: ["CN", "HK"],
    proxyCountries: ["JP"],
    directIps: ["198.51.100.0/25"],
    proxyIps: ["192.0.2.128/25"],
    directDomains: ["*.direct.test"],
    proxyDomains: [".proxied.test", "www.direct.test"],
  }, { resolveDns: () => Promise.reject(new Error("no lookup expected")) });
  const decide = async (host: string) => {
    const decision = await router.decide(host);
    return `${decision.route} ${decision.rule}`;
  };
  assert.equal(
    await decide("www.direct.test"),
    `direct direct_domains "*.direct.test"`,
    "direct lists first",
  );
  assert.equal(await decide("a.proxied.test"), `proxy proxy_domains ".proxied.test"`);
  assert.equal(
    await decide("198.51.100.9"),
    "direct direct_ips 198.51.100.0/25",
    "IP rule before country US",
  );
  assert.equal(await decide("192.0.2.200"), "proxy proxy_ips 192.0.2.128/25", "IP rule before country CN");
  assert.equal(await decide("192.0.2.1"), "direct country CN");
  assert.equal(await decide("2001:db8::5"), "direct country CN");
  assert.equal(await decide("203.0.113.1"), "direct country HK");
  assert.equal(await decide("203.0.113.129"), "proxy country JP");
  assert.equal(await decide("198.51.100.200"), "proxy default_strategy", "US is in no list");
  assert.equal(await decide("8.8.8.8"), "proxy default_strategy", "no country");
});

Deno.test("a name is resolved for IP and country rules; any direct address makes it direct", async () => {
  const lookups: string[] = [];
  const answers: Record<string, Record<string, string[]>> = {
    "cn.example": { A: ["198.51.100.200", "192.0.2.10"], AAAA: [] },
    "us.example": { A: ["198.51.100.200"], AAAA: ["2606:4700::1"] },
  };
  const router = await ForwardRouter.load({ ...NO_RULES, geoipDb: DB, directCountries: ["CN"] }, {
    resolveDns: (name, type) => {
      lookups.push(`${name} ${type}`);
      const found = answers[name]?.[type];
      return found ? Promise.resolve(found) : Promise.reject(new Deno.errors.NotFound(name));
    },
  });
  const cn = await router.decide("cn.example");
  assert.deepEqual([cn.route, cn.rule, cn.addresses], ["direct", "country CN", [
    "198.51.100.200",
    "192.0.2.10",
  ]]);
  assert.equal((await router.decide("us.example")).route, "proxy");
  const unknown = await router.decide("nowhere.example");
  assert.deepEqual([unknown.route, unknown.rule], ["proxy", "default_strategy"], "a failed lookup: default");
  assert.equal(lookups.length, 6);
});

Deno.test("without IP or country rules a name is never resolved", async () => {
  const router = new ForwardRouter({ ...NO_RULES, directDomains: ["a.test"], defaultStrategy: "direct" }, {
    resolveDns: () => Promise.reject(new Error("must not resolve")),
  });
  assert.equal((await router.decide("b.test")).rule, "default_strategy");
  assert.equal((await router.decide("b.test")).route, "direct");
});

Deno.test("a lookup that hangs falls to the default strategy after the deadline", async () => {
  const router = new ForwardRouter({ ...NO_RULES, directIps: ["10.0.0.0/8"] }, {
    resolveTimeoutMs: 50,
    resolveDns: (_name, _type, options) =>
      new Promise((_, reject) =>
        options.signal.addEventListener("abort", () => reject(new Error("aborted")))
      ),
  });
  const started = performance.now();
  const decision = await router.decide("slow.example");
  assert.equal(decision.rule, "default_strategy");
  assert.ok(performance.now() - started < 1000);
});

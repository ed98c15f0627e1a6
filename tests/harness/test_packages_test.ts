import { deepStrictEqual as assertEquals, match as assertMatch } from "node:assert";
import {
  missingPackagesMessage,
  missingTestPackages,
  TEST_PACKAGES,
  type TestPackage,
} from "./test_packages.ts";

const fake = (name: string, present: boolean): TestPackage => ({
  name,
  purpose: `the ${name} tests`,
  present: () => Promise.resolve(present),
});

Deno.test("missingTestPackages lists only the packages that are absent, in table order", async () => {
  const table = [fake("a", true), fake("b", false), fake("c", false)];
  assertEquals((await missingTestPackages(table)).map((p) => p.name), ["b", "c"]);
});

Deno.test("missingPackagesMessage names each package, its use and the install command", () => {
  const msg = missingPackagesMessage([fake("chromium", false), fake("munge", false)]);
  assertMatch(msg, /chromium: the chromium tests/);
  assertMatch(msg, /munge: the munge tests/);
  assertMatch(msg, /sudo apt-get install chromium munge/);
});

Deno.test("TEST_PACKAGES includes chromium for the dashboard's browser test", () => {
  assertEquals(TEST_PACKAGES.some((p) => p.name === "chromium"), true);
});
